"""The steel-plant demo: register, import, train, backtest, and replay a day as live telemetry.

Data: UCI "Steel Industry Energy Consumption" (DAEWOO Steel, Gwangyang, 2018,
CC BY 4.0), shipped inside the package (``digitaltwin/demo_data/steel_industry/``) with its attribution.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digitaltwin.demo_data import STEEL_CSV
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.ingest.batch import ingest_batch
from digitaltwin.ingest.csv_import import STEEL_PRESET, ImportReport, import_csv
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)

#: Korea's national electricity emission factor in force for 2018 consumption, gCO2e/kWh:
#: 0.4594 tCO2e/MWh, the 2014-2016 average "national specific electricity emission factor" of the
#: Ministry of Environment's K-ETS reporting and verification guideline (온실가스 배출권거래제의
#: 배출량 보고 및 인증에 관한 지침, annex 6), compiled by the Greenhouse Gas Inventory and Research
#: Center of Korea. A constant: Korea publishes no hourly grid intensity.
KR_GRID_G_PER_KWH = 459.4
SITE = Site("daewoo-steel", "DAEWOO Steel, Gwangyang", "Asia/Seoul", "KR", {"co2_factor_g_per_kwh": KR_GRID_G_PER_KWH})
PLANT = Asset("steel-plant", SITE.id, "Steel plant main meter", AssetKind.METER, attributes={"source": "UCI dataset 851"})
LIVE = Asset(
    "steel-plant-live",
    SITE.id,
    "Steel plant live feed (demo replay)",
    AssetKind.METER,
    parent_id=PLANT.id,
    attributes={"note": "the dataset's last day replayed as live telemetry"},
)
def find_dataset() -> Path:
    """The steel CSV shipped inside the package (so the demo runs from an installed wheel too).

    Raises:
        FileNotFoundError: the package was installed without its data files.
    """
    if not STEEL_CSV.is_file():
        raise FileNotFoundError(f"{STEEL_CSV} is missing: reinstall the digitaltwin package with its data files")
    return STEEL_CSV


def register_steel(repo: Repository) -> None:
    """Register the steel site and plant meter unless they exist (an existing definition is kept,
    but a site registered before sites had attributes gets the Korean grid factor)."""
    current = next((site for site in repo.list_sites() if site.id == SITE.id), None)
    if current is None:
        repo.create_site(SITE, exist_ok=True)
    elif not {"co2_factor_g_per_kwh", "carbon_intensity_asset_id"} & set(current.attributes):
        repo.update_site(replace(current, attributes={**current.attributes, **SITE.attributes}))
    if not repo.known_asset_ids([PLANT.id]):
        repo.create_asset(PLANT, exist_ok=True)


#: What ``digitaltwin import --preset NAME`` registers before importing.
PRESET_SETUP: dict[str, Callable[[Repository], None]] = {"steel": register_steel}


def setup_and_import(
    repo: Repository, dataset: Path, *, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Register the site and assets (idempotent) and import the dataset."""
    register_steel(repo)
    if not repo.known_asset_ids([LIVE.id]):
        repo.create_asset(LIVE, exist_ok=True)
    return import_csv(repo, dataset, STEEL_PRESET, progress=progress)


def replay_items(repo: Repository, *, now: datetime | None = None) -> list[dict[str, object]]:
    """The plant's last stored day as telemetry items of the live asset, shifted to end at ``now``.

    Items are energy per 15-min interval (``quantity=energy``, kWh), oldest first.
    """
    info = repo.find_series(PLANT.id, "energy")
    extent = repo.series_extent(info.id) if info else None
    if info is None or extent is None:
        return []
    last = extent[1]
    page = repo.read_page(PLANT.id, start=last - timedelta(days=1) + timedelta(minutes=15), quantity="energy", limit=200)
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    now -= timedelta(minutes=now.minute % 15)
    shift = now - (last + timedelta(minutes=15))
    return [
        {"asset_id": LIVE.id, "ts": (row.ts + shift).isoformat(), "quantity": "energy", "value": row.value, "unit": "kWh"}
        for row in page.rows
    ]


def replay(repo: Repository, *, seconds_per_interval: float, stop: threading.Event | None = None) -> int:
    """Write the replay items one by one through the HTTP ingestion path; returns readings stored.

    With ``seconds_per_interval`` > 0 it waits between items (stoppable through ``stop``).
    """
    stored = 0
    stop = stop or threading.Event()
    for item in replay_items(repo):
        if stop.is_set():
            break
        stored += ingest_batch(repo, [item]).stored
        if seconds_per_interval > 0 and stop.wait(seconds_per_interval):
            break
    log.info("demo replay stored %d readings", stored)
    return stored


#: Username of the demo's admin account.
DEMO_ADMIN = "admin"


def ensure_demo_admin(repo: Repository) -> str | None:
    """Create the demo's admin account with a random password (there are no default accounts).

    Returns:
        The password, to be printed once, or None when the account exists already (reset it
        with ``digitaltwin users set-password admin``).
    """
    import secrets
    from datetime import UTC, datetime

    from digitaltwin.security.accounts import Accounts
    from digitaltwin.security.audit import AuditLog
    from digitaltwin.security.roles import Role
    from digitaltwin.security.store import SecurityStore

    store = SecurityStore(repo.engine)
    if store.get_user_by_name(DEMO_ADMIN) is not None:
        return None
    clock = lambda: datetime.now(UTC)  # noqa: E731
    password = secrets.token_urlsafe(15)  # 120 random bits, 20 characters
    Accounts(store, AuditLog(store, clock), clock).create(DEMO_ADMIN, password, Role.ADMIN, actor="demo")
    return password


def assign_demo_tariff(repo: Repository) -> str:
    """Import the demo's KEPCO industrial time-of-use tariff and bill the steel site under it from 2018
    (idempotent); returns the tariff id. Why this tariff: ``services/demo_tariff.py``."""
    from datetime import date

    from digitaltwin.services.billing import BillingService
    from digitaltwin.services.demo_tariff import KEPCO_INDUSTRIAL_B_HV_A_II as TARIFF

    service = BillingService(repo, max_hold=timedelta(hours=1))
    if TARIFF["id"] not in {t.id for t in service.store.list()}:
        service.import_tariff(TARIFF, tariff_id=TARIFF["id"])
    if not service.store.assignments(site_id=SITE.id):
        service.assign(TARIFF["id"], site_id=SITE.id, valid_from=date(2018, 1, 1))
    return str(TARIFF["id"])
