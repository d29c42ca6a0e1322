"""The energy answer written by orjson is the text pydantic writes for the same report, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.api.routers.assets import energy_body, energy_out
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.services.energy import energy_report
from digitaltwin.storage.repository import Repository

T0 = datetime(2024, 3, 30, 22, tzinfo=UTC)  # Berlin's spring-forward night follows


def test_the_fast_body_is_the_models_json(repo: Repository) -> None:
    repo.create_site(Site("s", "S", "Europe/Berlin"))
    repo.create_asset(Asset("c", "s", "C", AssetKind.METER))
    repo.create_asset(Asset("p", "s", "P", AssetKind.METER))
    # A counter with a reset (an event), a gap (null buckets) and values whose floats need care.
    totals = [1000.0 + 2.5 * i for i in range(20)] + [3.1 + 0.7 * i for i in range(20)]
    readings = [Reading("c", "energy_total", T0 + timedelta(minutes=15 * i), v) for i, v in enumerate(totals) if not 24 <= i < 30]
    repo.write_readings(readings)
    repo.write_readings([Reading("p", "power", T0 + timedelta(minutes=7 * i), 0.1 * i + 1 / 3) for i in range(60)])
    for asset_id in ("c", "p"):
        for bucket in (Bucket.QUARTER_HOUR, Bucket.HOUR, Bucket.DAY):
            report = energy_report(repo, asset_id, start=T0, end=T0 + timedelta(hours=12), bucket=bucket,
                                   max_hold=timedelta(minutes=15), now=T0 + timedelta(days=1))
            assert energy_body(asset_id, bucket, report) == energy_out(asset_id, bucket, report).model_dump_json().encode()
    assert report.rows and any(r.energy_kwh is None for r in energy_report(
        repo, "c", start=T0, end=T0 + timedelta(hours=12), bucket=Bucket.QUARTER_HOUR, max_hold=timedelta(minutes=15)).rows)
