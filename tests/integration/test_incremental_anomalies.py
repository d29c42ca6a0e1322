"""The incremental consumption-anomaly detector gives the full computation's detections, hour after hour.

Real data: LEAD 1.0 building 697 (hourly electricity with labelled anomalies, read in place from
``../shared/data/lead_anomaly``), on a New York site, fed hour by hour through storage as ingestion
would, across the spring DST change, with hours that arrive late (alone and as a catch-up batch),
hours that never arrive, and, for a counter, a meter replacement recorded after the fact. At every
hour the runner would evaluate (:func:`~digitaltwin.services.detection.closed_intervals`), the
detections of :class:`~digitaltwin.services.anomaly_alarms.ConsumptionAnomalies` (a kept window
read only where it can change) equal those of the full computation: eight weeks of energy read
from storage and scored by :meth:`ConsumptionDetector.detect`. SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.monitoring import ConsumptionDetector, DetectorSettings
from digitaltwin.monitoring.alarms import Detection
from digitaltwin.services.anomaly_alarms import HISTORY_WEEKS, ConsumptionAnomalies, hour_detections
from digitaltwin.services.detection import Touched, closed_intervals
from digitaltwin.services.energy import energy_report
from digitaltwin.services.meter import ReplacementIn, record_replacement
from digitaltwin.storage.repository import Repository

LEAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "lead_anomaly" / "lead_5_buildings.csv"
HOLD = timedelta(minutes=20)
#: The first hour fed one by one. The building's readings are placed so that its labelled
#: anomalies of late March 2016 fall on the days after the New York DST change (13 March 2016,
#: 07:00 UTC): a shift of two weeks, so weekdays stay weekdays.
P = datetime(2016, 3, 11, tzinfo=UTC)
SHIFT = timedelta(days=14)
pytestmark = pytest.mark.skipif(not LEAD.exists(), reason="LEAD data not found beside the repository (../shared/data)")


def building() -> pd.Series:
    """Hourly kWh of LEAD building 697 on the UTC grid, two weeks earlier than metered."""
    df = pd.read_csv(LEAD, parse_dates=["timestamp"])
    g = df[df["building_id"] == 697].sort_values("timestamp")
    index = pd.date_range(datetime(2016, 1, 1, 5, tzinfo=UTC) - SHIFT, periods=len(g), freq="h")
    return pd.Series(g["meter_reading"].to_numpy(dtype=float), index=index)


def full(repo: Repository, asset_id: str, quantity: str, start: datetime, end: datetime) -> tuple[list[Detection], pd.Series]:
    """The full computation: eight weeks of hourly energy from storage, scored by ``detect``; and that energy."""
    report = energy_report(repo, asset_id, start=end - timedelta(weeks=HISTORY_WEEKS), end=end, bucket=Bucket.HOUR,
                           max_hold=HOLD, quantity=quantity, now=end)
    y = pd.Series([r.energy_kwh for r in report.rows], index=pd.DatetimeIndex([r.start for r in report.rows]), dtype=float)
    if y.notna().sum() < 2:
        return [], y
    detection = ConsumptionDetector(DetectorSettings(model={"enabled": False})).detect(y, timezone=report.timezone)
    return hour_detections(asset_id, start, end, detection.events), y


class Feed:
    """Writes batches as ingestion does and compares both computations at every hour the runner evaluates."""

    def __init__(self, repo: Repository, asset_id: str, quantity: str) -> None:
        self.repo, self.asset_id, self.quantity = repo, asset_id, quantity
        self.detector = ConsumptionAnomalies(max_hold=HOLD)
        self.newest: datetime | None = None
        self.evaluated: list[datetime] = []
        self.active: list[Detection] = []

    def batch(self, readings: list[Reading]) -> None:
        self.repo.write_readings(readings, interval_seconds=3600 if self.quantity == "energy" else None)
        stamps = [r.ts for r in readings]
        touched = Touched(self.asset_id, self.quantity, min(stamps), max(stamps), len(stamps))
        starts, self.newest = closed_intervals(touched, 3600, self.newest)
        for start in starts:
            end = start + timedelta(hours=1)
            got = list(self.detector.detect_interval(self.asset_id, self.quantity, start, end, self.repo))
            expected, energy = full(self.repo, self.asset_id, self.quantity, start, end)
            assert got == expected, start
            kept = self.detector.kept_window(self.asset_id, self.quantity)
            assert kept is not None and kept.end_s == int(end.timestamp())
            np.testing.assert_array_equal(kept.values, energy.to_numpy(), err_msg=str(start))  # the scored energy, bit for bit
            self.evaluated.append(start)
            self.active += [d for d in got if d.active]


@pytest.fixture
def site(repo: Repository) -> Repository:
    repo.create_site(Site("ny", "New York office", "America/New_York"))
    for asset_id in ("b697", "b697-counter", "b697-power"):
        repo.create_asset(Asset(asset_id, "ny", asset_id, AssetKind.BUILDING))
    return repo


def test_interval_energy_across_dst_with_late_hours_and_gaps(site: Repository) -> None:
    y = building()
    history = y[(y.index >= P - timedelta(weeks=HISTORY_WEEKS, days=1)) & (y.index < P)]
    site.write_readings([Reading("b697", "energy", ts.to_pydatetime(), float(v)) for ts, v in history.items()], interval_seconds=3600)
    feed = Feed(site, "b697", "energy")
    late, never, catch_up = {20, 21, 22}, {50, 51}, range(80, 84)

    def reading(k: int) -> Reading:
        ts = P + timedelta(hours=k)
        return Reading("b697", "energy", ts, float(y[ts]))

    for k in range(168):
        if k in late or k in never or k in catch_up[:-1]:
            continue
        batch = [reading(k)]
        if k == 30:
            batch = [reading(h) for h in sorted(late)] + batch  # the late hours arrive with hour 30
        if k == catch_up[-1]:
            batch = [reading(h) for h in catch_up]  # four hours at once after an outage
        feed.batch(batch)
    assert set(feed.evaluated) >= {P + timedelta(hours=h) for h in late}  # late hours were evaluated again
    assert feed.detector.reads["incremental"] > 130 and feed.detector.reads["full"] < 12
    kinds = {d.type for d in feed.active}
    assert "profile_residual" in kinds and len(feed.active) >= 10, kinds  # the labelled days of late March


def test_counter_with_a_meter_replacement_recorded_later(site: Repository) -> None:
    y = building()
    y = y[y.index >= P - timedelta(weeks=HISTORY_WEEKS, days=1)]
    swap = P + timedelta(hours=40)
    register = 1000.0 + y.cumsum()
    new_meter = 5.0 + (y[y.index >= swap].cumsum() - y[swap])  # the new meter starts near zero at the swap
    register[register.index >= swap] = new_meter
    history = register[register.index < P]
    site.write_readings([Reading("b697-counter", "energy_total", ts.to_pydatetime(), float(v)) for ts, v in history.items()])
    feed = Feed(site, "b697-counter", "energy_total")
    for k in range(72):
        ts = P + timedelta(hours=k)
        feed.batch([Reading("b697-counter", "energy_total", ts, float(register[ts]))])
        if k == 60:  # recorded through the API most of a day later: it changes the energy of hours already kept
            record_replacement(site, "b697-counter", ReplacementIn(
                "energy_total", swap - timedelta(seconds=1), float(register[swap - timedelta(hours=1)] + y[swap]),
                swap, float(register[swap])))
    assert feed.detector.reads["incremental"] >= 65 and feed.detector.reads["full"] <= 3


def test_power_samples_every_quarter_hour_with_a_missing_sample(site: Repository) -> None:
    y = building()
    quarters = y.resample("15min").ffill() * (1.0 + 0.02 * np.sin(np.arange(len(y) * 4 - 3)))
    quarters = quarters[quarters.index >= P - timedelta(weeks=HISTORY_WEEKS, days=1)]
    history = quarters[quarters.index < P]
    site.write_readings([Reading("b697-power", "power", ts.to_pydatetime(), float(v)) for ts, v in history.items()])
    feed = Feed(site, "b697-power", "power")
    hour = []
    for ts, kw in quarters[(quarters.index >= P) & (quarters.index < P + timedelta(hours=36))].items():
        if ts == pd.Timestamp(P + timedelta(hours=10, minutes=30)):
            continue  # the sample before it is held 20 minutes: a 10-minute hole in that hour
        hour.append(Reading("b697-power", "power", ts.to_pydatetime(), float(kw)))
        if len(hour) == 2:  # two samples per committed batch
            feed.batch(hour)
            hour = []
    assert feed.detector.reads["incremental"] >= 30
