"""``digitaltwin tariffs import/assign/list`` and ``digitaltwin bill`` on both real databases; the demo's
KEPCO tariff bills the steel plant's November from the stored readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.services import demo
from digitaltwin.storage.repository import Repository
from tests.accounting.sam_reference import INVALID_TARIFF, TARIFF_DIR, steel_kw
from tests.integration.test_cli_forecast import _run


def _november(repo: Repository) -> None:
    demo.register_steel(repo)
    kw, _, _ = steel_kw()
    nov = datetime(2018, 10, 31, 15, tzinfo=UTC)  # 2018-11-01 00:00 in Seoul
    first = int((nov - datetime(2017, 12, 31, 15, tzinfo=UTC)).total_seconds() // 900)
    repo.write_readings([Reading(demo.PLANT.id, "energy", nov + timedelta(minutes=15 * i), float(kw[first + i] / 4))
                         for i in range(30 * 96)], interval_seconds=900)


def test_import_refuses_the_invalid_tariff_naming_the_entry(settings: Settings, repo: Repository) -> None:
    out = _run(settings, "tariffs", "import", str(TARIFF_DIR / INVALID_TARIFF), exit_code=2)
    assert "energyweekdayschedule[0][0]" in out
    out = _run(settings, "tariffs", "import", str(TARIFF_DIR / "pge_E19_5cef0a415457a33576f60fe2.json"), "--id", "e19")
    assert "tariff e19 (urdb, USD)" in out and "kept, not billed" in out
    assert "e19" in _run(settings, "tariffs", "list")
    shown = _run(settings, "tariffs", "show", "e19")
    assert "fixedchargeunits" in shown and "$/day" in shown
    assert "tariff_id" in _run(settings, "tariffs", "show", "nope", exit_code=2)
    assert "exists" in _run(settings, "tariffs", "import", str(TARIFF_DIR / "pge_E19_5cef0a415457a33576f60fe2.json"), "--id", "e19", exit_code=2)


def test_bill_month_prints_line_items_under_the_demo_tariff(settings: Settings, repo: Repository) -> None:
    _november(repo)
    assert demo.assign_demo_tariff(repo) == "kepco-industrial-b-hv-a-ii"
    assert demo.assign_demo_tariff(repo) == "kepco-industrial-b-hv-a-ii"  # idempotent
    out = _run(settings, "bill", "--site", demo.SITE.id, "--month", "2018-11")
    assert "2018-11" in out and "KRW" in out and "flat demand" in out and "VAT" in out
    assert "--month" in _run(settings, "bill", "--site", demo.SITE.id, "--month", "2018-13", exit_code=2)
    assert "tariff" in _run(settings, "bill", "--asset", demo.PLANT.id, "--month", "2018-11", exit_code=2)


def test_assign_from_the_command_line(settings: Settings, repo: Repository) -> None:
    _november(repo)
    _run(settings, "tariffs", "import", str(TARIFF_DIR / "sce_GS2-TOU-B_55fc81d7682bea28da64f9ae.json"), "--id", "gs2")
    out = _run(settings, "tariffs", "assign", "gs2", "--asset", demo.PLANT.id, "--from", "2018-01-01", "--bill-day", "15")
    assert "billed under gs2 from 2018-01-01" in out
    assert "valid_from" in _run(settings, "tariffs", "assign", "gs2", "--asset", demo.PLANT.id, "--from", "2018-06-01", exit_code=2)
    assert "--from" in _run(settings, "tariffs", "assign", "gs2", "--asset", demo.PLANT.id, "--from", "June", exit_code=2)
    out = _run(settings, "bill", "--asset", demo.PLANT.id, "--month", "2018-11")
    assert "2018-10-15..2018-11-14" in out and "2018-11-15..2018-12-14" in out and "USD" in out


def test_scenario_prints_savings_per_month_and_total(settings: Settings, repo: Repository) -> None:
    _november(repo)
    demo.assign_demo_tariff(repo)
    out = _run(settings, "scenario", "--site", demo.SITE.id, "--start", "2018-11-01", "--end", "2018-12-01",
               "--battery-kwh", "600", "--battery-kw", "300", "--perfect-foresight")
    assert "from 2018-11-01" in out and "total" in out and "KRW" in out and "PERFECT FORESIGHT" in out
    assert "--battery-kw" in _run(settings, "scenario", "--site", demo.SITE.id, "--start", "2018-11-01", "--end", "2018-12-01",
                                  "--battery-kwh", "600", exit_code=2)
    assert "--start" in _run(settings, "scenario", "--site", demo.SITE.id, "--start", "Nov", "--end", "2018-12-01", exit_code=2)
