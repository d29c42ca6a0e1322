"""``digitaltwin accounting co2|kpis|tree`` and ``sites add --attribute`` on both real databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind
from digitaltwin.domain.readings import Reading
from digitaltwin.storage.repository import Repository
from tests.integration.test_cli_forecast import _run


def test_site_attributes_co2_kpis_and_tree(settings: Settings, repo: Repository) -> None:
    out = _run(settings, "sites", "add", "s", "--timezone", "Asia/Seoul", "--attribute", "co2_factor_g_per_kwh=-1", exit_code=2)
    assert "co2_factor_g_per_kwh" in out
    _run(settings, "sites", "add", "s", "--timezone", "Asia/Seoul", "--attribute", "co2_factor_g_per_kwh=500")
    _run(settings, "sites", "add", "s", "--country", "KR")  # other options keep the attributes
    assert repo.get_site("s").attributes == {"co2_factor_g_per_kwh": 500.0}
    assert "carbon_intensity_asset_id" in _run(settings, "sites", "add", "s", "--attribute", "carbon_intensity_asset_id=ghost", exit_code=2)

    repo.create_asset(Asset("main", "s", "Main", AssetKind.METER))
    repo.create_asset(Asset("line", "s", "Line", AssetKind.MACHINE, "main"))
    start = datetime(2024, 1, 1, tzinfo=UTC) - timedelta(hours=9)  # local midnight in Seoul
    main = [Reading("main", "energy", start + timedelta(minutes=15 * i), 10.0) for i in range(96)]
    line = [Reading("line", "energy", start + timedelta(minutes=15 * i), 4.0) for i in range(96)]
    repo.write_readings(main + line, interval_seconds=900)
    span = ("--start", "2024-01-01T00:00:00+09:00", "--end", "2024-01-02T00:00:00+09:00")

    out = _run(settings, "accounting", "co2", "main", *span, "--bucket", "day")
    assert "960.0" in out and "480.0" in out and "0.500" in out  # kWh, kg, kg/kWh

    out = _run(settings, "accounting", "kpis", "--site", "s", *span)
    assert "960.0" in out and "40.0" in out and "100.0%" in out  # site energy = the root only; 10 kWh per 15 min = 40 kW

    out = _run(settings, "accounting", "tree", "s", *span)
    assert "576.0" in out and "384.0" in out  # main's unmetered remainder, line's energy

    assert "--asset" in _run(settings, "accounting", "kpis", *span, exit_code=2)
