"""The forecasting target (numpy over the window's readings) is energy_report's numbers, on real data.

SQLite and PostgreSQL (the ``repo`` fixture). Data: the steel plant (15-minute interval energy,
Asia/Seoul) and Cambridge building b2 (hourly, Europe/London, so 2019-03-31 has 23 hours and
2019-10-27 has 25) with Bedford temperature as exogenous series; gaps are cut into both, and the
steel plant's energy is also stored as a counter and as power to cover every series kind.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.registry.store import ModelRegistry
from digitaltwin.services import demo
from digitaltwin.services.energy import energy_report
from digitaltwin.services.forecasting import ForecastService
from digitaltwin.storage.repository import Repository
from tests.conftest import REPO_ROOT, STEEL_CSV

HOLD = timedelta(hours=1)
CAMBRIDGE = REPO_ROOT / "datasets" / "cambridge_estates_2019"
LONDON = ZoneInfo("Europe/London")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hourly_csv(path: str, column: str) -> pd.Series:
    frame = pd.read_csv(CAMBRIDGE / path)
    index = pd.DatetimeIndex(pd.to_datetime(frame["datetime"])).tz_localize("UTC")
    return pd.Series(frame[column].to_numpy(dtype=float), index=index)


def write(repo: Repository, asset_id: str, quantity: str, series: pd.Series, *, interval_seconds: int | None = None) -> None:
    rows = [Reading(asset_id, quantity, ts.to_pydatetime(), float(v)) for ts, v in series.items()]
    for i in range(0, len(rows), 5000):
        repo.write_readings(rows[i : i + 5000], interval_seconds=interval_seconds)


@pytest.fixture
def plants(repo: Repository) -> Repository:
    """The steel plant with gaps, its energy as counter and power assets, and Cambridge b2 with weather."""
    assert demo.setup_and_import(repo, STEEL_CSV).readings_stored == 35040
    # gaps: a missing day, a missing hour, and a single missing interval
    repo.delete_readings("steel-plant", start=utc(2018, 12, 10, 3), end=utc(2018, 12, 11, 3))
    repo.delete_readings("steel-plant", start=utc(2018, 12, 20, 5), end=utc(2018, 12, 20, 6))
    repo.delete_readings("steel-plant", start=utc(2018, 12, 27, 8, 15), end=utc(2018, 12, 27, 8, 30))
    stored = repo.read_page("steel-plant", start=utc(2018, 11, 1), limit=100_000)
    energy = pd.Series([r.value for r in stored.rows], index=pd.DatetimeIndex([r.ts for r in stored.rows]))
    site = repo.get_asset("steel-plant").site_id
    for asset_id in ("steel-counter", "steel-power"):
        repo.create_asset(Asset(asset_id, site, asset_id, AssetKind.METER))
    write(repo, "steel-counter", "energy_total", energy.cumsum())  # register read at the interval start
    write(repo, "steel-power", "power", energy * 4.0)  # kW held over the 15 minutes

    repo.create_site(Site("cambridge", "Cambridge", "Europe/London", "GB"))
    repo.create_asset(Asset("bedford-weather", "cambridge", "Bedford weather", AssetKind.WEATHER))
    exog = {"forecast_exog": [{"asset_id": "bedford-weather", "quantity": "temperature"}]}
    repo.create_asset(Asset("b2", "cambridge", "Building b2", AssetKind.BUILDING, attributes=exog))
    load = hourly_csv("UCam_Building_b2/electricity/2019.csv", "equipment load [kWh]")
    for gap_start, gap_end in (("2019-03-30 20:00", "2019-03-31 02:00"), ("2019-10-27 00:00", "2019-10-27 03:00")):
        load = load.drop(load.index[(load.index >= gap_start) & (load.index < gap_end)])  # gaps across the DST changes
    write(repo, "b2", "energy", load, interval_seconds=3600)
    write(repo, "bedford-weather", "temperature", hourly_csv("weather_bedford/2019.csv", "air_temperature [degC]").dropna())
    return repo


def ceil_to(value: datetime, step: timedelta) -> datetime:
    return value + (-(value - datetime(1970, 1, 1, tzinfo=UTC))) % step


def reported(repo: Repository, asset_id: str, start: datetime, end: datetime, bucket: Bucket, now: datetime) -> pd.Series:
    report = energy_report(repo, asset_id, start=start, end=end, bucket=bucket, max_hold=HOLD, now=now)
    index = pd.DatetimeIndex([r.start for r in report.rows]).tz_convert("UTC")
    return pd.Series([r.energy_kwh for r in report.rows], index=index, dtype="float64", name=asset_id)


CASES = [
    # asset, start, end, bucket of the target
    ("steel-plant", utc(2018, 12, 1), utc(2018, 12, 31), Bucket.QUARTER_HOUR),
    # unaligned ends: the target holds the whole intervals inside the range only
    ("steel-plant", utc(2018, 12, 9, 22, 7, 30), utc(2018, 12, 21, 0, 0, 1), Bucket.QUARTER_HOUR),
    ("steel-counter", utc(2018, 12, 5), utc(2018, 12, 29), Bucket.QUARTER_HOUR),
    ("steel-power", utc(2018, 12, 5), utc(2018, 12, 29), Bucket.QUARTER_HOUR),
    ("b2", utc(2019, 3, 25), utc(2019, 4, 8), Bucket.HOUR),  # spring forward, with a gap around it
    ("b2", utc(2019, 10, 20), utc(2019, 11, 3, 0, 30), Bucket.HOUR),  # fall back
]


@pytest.mark.parametrize(("asset_id", "start", "end", "bucket"), CASES, ids=[f"{c[0]}-{c[1]:%m%d%H%M}" for c in CASES])
def test_target_is_energy_report_exactly(
    plants: Repository, tmp_path: Path, asset_id: str, start: datetime, end: datetime, bucket: Bucket
) -> None:
    service = ForecastService(plants, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    target = service.target(asset_id, start=start, end=end)
    step = timedelta(hours=1) if bucket is Bucket.HOUR else timedelta(minutes=15)
    assert target.step == step
    # target() holds power samples until now; data of 2018/2019 ends long before
    whole_start, whole_end = ceil_to(start, step), end - (end - datetime(1970, 1, 1, tzinfo=UTC)) % step
    expected = reported(plants, asset_id, whole_start, whole_end, bucket, now=datetime.now(UTC))
    pd.testing.assert_series_equal(target.y, expected, check_exact=True)
    if asset_id in ("steel-plant", "b2"):  # a counter spreads its increase over a gap; a power sample is held up to HOLD
        assert target.y.isna().any(), "the window must hold a gap"
    assert np.isfinite(target.y.to_numpy()).sum() > 100


def test_dst_days_have_their_hours_and_exog_is_the_hourly_mean(plants: Repository, tmp_path: Path) -> None:
    service = ForecastService(plants, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    target = service.target("b2", start=utc(2019, 3, 25), end=utc(2019, 11, 3), future_steps=5)
    local_days = target.y.index.tz_convert(LONDON).normalize()
    per_day = pd.Series(1, index=target.y.index).groupby(local_days).size()
    assert per_day[pd.Timestamp("2019-03-31", tz=LONDON)] == 23
    assert per_day[pd.Timestamp("2019-10-27", tz=LONDON)] == 25
    assert target.exog is not None and len(target.exog) == len(target.y) + 5
    weather = hourly_csv("weather_bedford/2019.csv", "air_temperature [degC]")
    assert target.exog["temperature"].iloc[: len(target.y)].to_numpy() == pytest.approx(
        weather.reindex(target.y.index).to_numpy(), nan_ok=True
    )



def meter(repo: Repository, asset_id: str, timezone: str) -> None:
    repo.create_site(Site(f"site-{asset_id}", asset_id, timezone, None))
    repo.create_asset(Asset(asset_id, f"site-{asset_id}", asset_id, AssetKind.METER))


def test_power_meter_off_the_grid_gives_whole_intervals_and_forecasts_the_one_in_progress(
    repo: Repository, tmp_path: Path
) -> None:
    """Newcomer report: 5-minute power samples from 00:02 made forecasts a 500; the last partial
    interval (last sample 12:20) was read as a full one (1.667 kWh instead of 5 kWh at 20 kW)."""
    meter(repo, "p1", "Europe/Berlin")
    first, last = utc(2026, 10, 1, 0, 2), utc(2026, 10, 3, 12, 20)
    count = (last - first) // timedelta(minutes=5) + 1
    repo.write_readings([Reading("p1", "power", first + i * timedelta(minutes=5), 20.0) for i in range(count)])
    service = ForecastService(repo, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    y = service.target("p1").y
    assert y.index[0] == utc(2026, 10, 1, 0, 15)  # [00:00, 00:15) holds only 13 minutes of data
    assert y.index[-1] == utc(2026, 10, 3, 12, 0)  # [12:15, 12:30) is still in progress at 12:20
    assert y.to_numpy() == pytest.approx(np.full(len(y), 5.0))
    result = service.forecast("p1", "persistence", horizon=timedelta(minutes=30))
    assert list(result.values.index) == [utc(2026, 10, 3, 12, 15), utc(2026, 10, 3, 12, 30)]
    assert result.values.to_numpy() == pytest.approx([5.0, 5.0])


def test_interval_energy_without_declared_length_ends_with_its_last_interval(repo: Repository, tmp_path: Path) -> None:
    """Hourly 40 kWh readings without a declared interval: the reading at 23:00 covers up to
    midnight, so the forecast starts at midnight (it started at 23:15 and counted 30 kWh twice),
    and the grid is hourly, the spacing of the readings (it was 15 minutes)."""
    meter(repo, "h2", "UTC")
    first = utc(2026, 11, 1)
    repo.write_readings([Reading("h2", "energy", first + timedelta(hours=i), 40.0) for i in range(3 * 24)])
    service = ForecastService(repo, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    target = service.target("h2")
    assert target.step == timedelta(hours=1)
    assert target.y.index[-1] == utc(2026, 11, 3, 23)
    assert target.y.to_numpy() == pytest.approx(np.full(3 * 24, 40.0))
    result = service.forecast("h2", "persistence", horizon=timedelta(hours=2))
    assert list(result.values.index) == [utc(2026, 11, 4), utc(2026, 11, 4, 1)]
    assert result.values.to_numpy() == pytest.approx([40.0, 40.0])


def test_hourly_meter_at_a_half_hour_offset_site_trains_backtests_and_forecasts(
    repo: Repository, tmp_path: Path
) -> None:
    """Hourly meters report UTC hours; at a UTC+05:30 site the target stays on them (it was cut at
    local hours, off the grid: 500 on forecast, train and backtest). Origins move to the next hour."""
    meter(repo, "k1", "Asia/Kolkata")
    first = utc(2026, 9, 1)
    hours = 40 * 24
    load = [50.0 + 20.0 * np.sin(2 * np.pi * (i % 24) / 24) + (i % 7) for i in range(hours)]
    repo.write_readings(
        [Reading("k1", "energy", first + timedelta(hours=i), load[i]) for i in range(hours)], interval_seconds=3600
    )
    service = ForecastService(repo, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    y = service.target("k1").y
    assert (y.index.minute == 0).all() and len(y) == hours
    trained = service.train("k1", "ridge")
    assert trained.manifest.horizon_steps == 24
    result = service.forecast("k1", "best", horizon=timedelta(hours=24), quantiles=(0.1, 0.9))
    assert result.values.index[0] == first + timedelta(hours=hours)
    assert np.isfinite(result.values.to_numpy()).all()
    backtest, _ = service.backtest("k1", ["seasonal_naive_daily"], start=date(2026, 10, 1), end=date(2026, 10, 5))
    origins = pd.DatetimeIndex(backtest.forecasts["origin"].unique()).tz_convert("UTC")
    assert list(origins) == [pd.Timestamp(f"2026-09-{d} 19:00", tz="UTC") for d in range(30, 31)] + [
        pd.Timestamp(f"2026-10-0{d} 19:00", tz="UTC") for d in range(1, 5)
    ]  # the first UTC hour after each local midnight (18:30 UTC)


def test_hourly_meter_reporting_local_hours_at_a_half_hour_site_keeps_its_intervals(
    repo: Repository, tmp_path: Path
) -> None:
    """Meters at a UTC+05:30 site often report local hours (18:30 UTC ...): the grid keeps that
    phase, so a forecast interval is a metered interval, not half of two (newcomer report)."""
    meter(repo, "k2", "Asia/Kolkata")
    first = utc(2026, 9, 1, 0, 30)
    hours = 10 * 24
    load = [40.0 + (i % 24) for i in range(hours)]
    repo.write_readings(
        [Reading("k2", "energy", first + timedelta(hours=i), load[i]) for i in range(hours)], interval_seconds=3600
    )
    service = ForecastService(repo, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    y = service.target("k2").y
    assert (y.index.minute == 30).all() and len(y) == hours
    assert y.to_numpy() == pytest.approx(load)
    result = service.forecast("k2", "seasonal_naive_daily", horizon=timedelta(hours=2))
    assert list(result.values.index) == [first + timedelta(hours=hours), first + timedelta(hours=hours + 1)]
    assert result.values.to_numpy() == pytest.approx(load[-24:-22])


def test_training_reads_at_most_three_years_so_a_stray_old_reading_is_left_out(repo: Repository, tmp_path: Path) -> None:
    meter(repo, "old", "Europe/Berlin")
    first = utc(2026, 9, 1)
    hours = 40 * 24
    rows = [Reading("old", "energy", first + timedelta(hours=i), 30.0 + (i % 24)) for i in range(hours)]
    rows.append(Reading("old", "energy", utc(2010, 1, 1), 5.0))  # a stray reading 16 years earlier
    repo.write_readings(rows, interval_seconds=3600)
    service = ForecastService(repo, ModelRegistry(tmp_path / "models"), max_hold=HOLD)
    trained = service.train("old", "ridge")
    start = pd.Timestamp(trained.manifest.training_start)
    last = first + timedelta(hours=hours - 1)
    assert start == pd.Timestamp(last) - pd.Timedelta(days=3 * 365 + 1)  # not 2010
