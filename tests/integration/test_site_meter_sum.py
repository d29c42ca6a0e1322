"""A site's meters summed for its bill (``BillingService.meter``) on the real repository, SQLite and
PostgreSQL: meters of different cadences and uneven coverage on one grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from digitaltwin.accounting.native import parse_native
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.batch import ingest_batch
from digitaltwin.services.billing import BillingService
from digitaltwin.storage.repository import Repository

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 29, 0, tzinfo=UTC)  # the night Berlin springs forward (01:00 UTC)
TARIFF = parse_native({"format": "native", "currency": "EUR", "energy": {"default_price": 0.3}})


def _items(asset_id: str, values: dict[int, float], minutes: int) -> list[dict[str, object]]:
    interval = "PT1H" if minutes == 60 else f"PT{minutes}M"
    return [{"asset_id": asset_id, "ts": (T0 + timedelta(minutes=minutes * i)).isoformat(), "quantity": "energy",
             "value": v, "unit": "kWh", "interval": interval} for i, v in values.items()]


@pytest.fixture
def service(repo: Repository) -> BillingService:
    repo.create_site(Site("berlin", "Berlin", "Europe/Berlin"))
    for asset_id in ("hourly", "quarter", "hourly-b"):
        repo.create_asset(Asset(asset_id, "berlin", asset_id, AssetKind.METER))
    # hourly: 4 kWh in each of the hours 00-05 UTC except 03
    assert ingest_batch(repo, _items("hourly", {h: 4.0 for h in (0, 1, 2, 4, 5)}, 60)).accepted == 5
    # quarter: 01:00-02:30 UTC, 1 kWh a quarter (3 kWh at 01:15), nothing at 01:30
    assert ingest_batch(repo, _items("quarter", {4: 1.0, 5: 3.0, 7: 1.0, 8: 1.0, 9: 1.0}, 15)).accepted == 5
    # hourly-b: 2 kWh at 03 UTC only
    assert ingest_batch(repo, _items("hourly-b", {3: 2.0}, 60)).accepted == 1
    return BillingService(repo, max_hold=timedelta(hours=1))


def test_mixed_cadences_share_the_quarter_hour_grid_with_uneven_coverage(service: BillingService) -> None:
    meter = service.meter(["hourly", "quarter", "hourly-b"], T0, T0 + timedelta(hours=6), BERLIN, TARIFF, now=T0 + timedelta(days=1))
    assert meter.interval_s == 900 and meter.start_s.size == 24 and meter.start_s[0] == T0.timestamp()
    hourly = np.repeat([1.0, 1.0, 1.0, np.nan, 1.0, 1.0], 4)  # 4 kWh an hour spread evenly over its quarters
    quarter = np.full(24, np.nan)
    quarter[[4, 5, 7, 8, 9]] = [1.0, 3.0, 1.0, 1.0, 1.0]
    hourly_b = np.where(np.arange(24) // 4 == 3, 0.5, np.nan)
    np.testing.assert_allclose(meter.present, np.isfinite(np.vstack([hourly, quarter, hourly_b])))
    expected = np.nansum(np.vstack([hourly, quarter, hourly_b]), axis=0)  # every interval has some meter's data
    np.testing.assert_allclose(meter.import_kwh, expected)
    assert float(np.nansum(meter.import_kwh)) == pytest.approx(5 * 4.0 + 7.0 + 2.0)
    assert meter.import_kwh[5] == pytest.approx(1.0 + 3.0)  # the coincident quarter: 16 kW
    assert meter.import_kwh[6] == pytest.approx(1.0)  # quarter has no data at 01:30: it counts 0 there


def test_hourly_meters_alone_stay_hourly_and_an_hour_without_any_meter_is_missing(service: BillingService) -> None:
    meter = service.meter(["hourly", "hourly-b"], T0, T0 + timedelta(hours=7), BERLIN, TARIFF, now=T0 + timedelta(days=1))
    assert meter.interval_s == 3600
    np.testing.assert_allclose(meter.import_kwh, [4.0, 4.0, 4.0, 2.0, 4.0, 4.0, np.nan])
    assert meter.present.sum(axis=1).tolist() == [5, 1]
