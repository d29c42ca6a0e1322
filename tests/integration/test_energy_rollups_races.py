"""Energy rollups stay exact when a refresh of the cells races writers and other refreshes.

A refresh reads the rollup state, the change marks, the meter rules and raw readings, then writes
cells. Each test stops one party at a chosen point with a hook (events between threads, no
timing), lets the other party run, and then compares the rollups' answer with the raw path's:

* a refresh running while a batch of readings is being written, before the batch is committed;
* with two writers of one series committing out of order (PostgreSQL: one writer does not wait
  for another there), a refresh between them;
* two refreshes of one series in different processes (the anomaly detector's and an API
  request's) straddling a meter replacement: the first computed its cells under the old rules;
* a report reading the cells while another process recomputes the series whole;

and, without hooks, two processes and this one writing, deleting, recording a meter replacement
and reading reports of the same series at once.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from digitaltwin.analytics.buckets import Bucket
from digitaltwin.config import Settings
from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.domain.readings import Reading
from digitaltwin.services import energy_rollups
from digitaltwin.services.energy import EnergyReport, energy_report
from digitaltwin.services.meter import ReplacementIn, record_replacement
from digitaltwin.storage.meter_events import MeterEventStore
from digitaltwin.storage import repository as repository_module
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.rollups import RollupStore
from tests.conftest import REPO_ROOT
from tests.integration.test_energy_rollups import assert_same

HOLD = timedelta(hours=1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 20
NOW = T0 + timedelta(days=400)
WAIT_S = 60.0  # a party that never reaches its hook fails the test instead of hanging it


def counter_values(k: int) -> float:
    """A counter register (kWh) at the k-th quarter hour: 0.5 to 2 kWh per quarter hour."""
    return 1000.0 + 0.5 * k + 0.25 * (k % 7)


@pytest.fixture
def meter(repo: Repository) -> Repository:
    """A counter meter (``energy_total``) and a power meter with 20 days of quarter hours, a
    day of each missing (written later by the tests)."""
    repo.create_site(Site("plant", "Plant", "UTC", None))
    repo.create_asset(Asset("meter", "plant", "meter", AssetKind.METER))
    repo.create_asset(Asset("press", "plant", "press", AssetKind.MACHINE))
    n = DAYS * 96
    repo.write_readings([Reading("meter", "energy_total", T0 + timedelta(minutes=15 * k), counter_values(k)) for k in range(n)])
    repo.write_readings([Reading("press", "power", T0 + timedelta(minutes=15 * k), 40.0 + (k % 11)) for k in range(n) if not 96 * 5 <= k < 96 * 6])
    return repo


def report(repo: Repository, asset_id: str, *, rollups: bool, bucket: Bucket = Bucket.HOUR) -> EnergyReport:
    return energy_report(repo, asset_id, start=T0, end=T0 + timedelta(days=DAYS), bucket=bucket, max_hold=HOLD, now=NOW, use_rollups=rollups)


def assert_rollups_exact(repo: Repository, asset_id: str) -> None:
    """The report from the stored cells equals the raw one (a stale cell would differ), by hour
    (one row per cell read) and by day (the day sums read)."""
    for bucket in (Bucket.HOUR, Bucket.DAY):
        assert_same(report(repo, asset_id, rollups=True, bucket=bucket), report(repo, asset_id, rollups=False, bucket=bucket))


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` in a thread; the list gets its result or its exception."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised by finish()
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def finish(thread: threading.Thread, out: list[Any]) -> Any:
    thread.join(WAIT_S)
    assert not thread.is_alive(), "a party of the race did not finish"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def wait(event: threading.Event) -> None:
    assert event.wait(WAIT_S), "a party of the race did not reach its hook"


@contextlib.contextmanager
def separate_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Threads of this test act as different processes: no lock held inside one process
    serialises their refreshes (only what the database shares does)."""
    monkeypatch.setattr(energy_rollups, "_process_lock", lambda engine, series_id: contextlib.nullcontext(), raising=False)
    yield


class CommitHook:
    """Runs ``action`` in the writing thread just before the batch writer
    (:func:`digitaltwin.storage.batch_write.write_arrays`) commits its transaction."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
        self.writer: int | None = None
        self.ran = False
        hook = self

        class Connection:
            def __init__(self, raw: Any) -> None:
                self._raw = raw

            def __getattr__(self, name: str) -> Any:
                return getattr(self._raw, name)

            def commit(self) -> None:
                if hook.writer == threading.get_ident():
                    hook.writer, hook.ran = None, True
                    action()
                self._raw.commit()

        class Engine:
            def __init__(self, engine: Any) -> None:
                self._engine = engine

            def __getattr__(self, name: str) -> Any:
                return getattr(self._engine, name)

            def raw_connection(self) -> Connection:
                return Connection(self._engine.raw_connection())

        original = repository_module.write_arrays
        monkeypatch.setattr(repository_module, "write_arrays", lambda engine, *args, **kwargs: original(Engine(engine), *args, **kwargs))

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        self.writer = threading.get_ident()
        try:
            yield
        finally:
            self.writer = None


@pytest.mark.parametrize("when", ["before_batch", "before_commit"])
def test_a_refresh_during_a_write_keeps_no_stale_cell(meter: Repository, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """Late readings of a missing day are written while another thread's report refreshes the cells:
    after the repository's own preparations (before the batch writer starts), or inside the batch
    writer's transaction just before it commits."""
    assert_rollups_exact(meter, "press")  # cells built, the missing day a gap
    late = [Reading("press", "power", T0 + timedelta(days=5, minutes=15 * k), 90.0) for k in range(96)]

    def concurrent_report() -> None:
        finish(*in_thread(lambda: report(meter, "press", rollups=True)))

    if when == "before_batch":
        original = repository_module.write_arrays
        done: list[bool] = []

        def write_arrays(*args: Any, **kwargs: Any) -> Any:
            if not done:
                done.append(True)
                concurrent_report()
            return original(*args, **kwargs)

        monkeypatch.setattr(repository_module, "write_arrays", write_arrays)
        meter.write_readings(late)
    else:
        hook = CommitHook(monkeypatch, concurrent_report)
        with hook.armed():
            meter.write_readings(late)
        assert hook.ran, "the hook did not run"
    assert_rollups_exact(meter, "press")


def test_writers_committing_out_of_order_lose_no_change(meter: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: writer A has written its batch (and its change mark) but not committed when
    writer B writes and commits, and a report refreshes the cells and stops before storing them;
    A commits; the report stores. A's mark was created first but became visible after the report
    read the marks: A's change must still reach the cells."""
    if meter.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: writes commit in the order they start")
    assert_rollups_exact(meter, "press")
    reader_ready, reader_go = threading.Event(), threading.Event()
    reader: list[int] = []
    original_write = RollupStore.write

    def write(self: RollupStore, *args: Any, **kwargs: Any) -> Any:
        if reader and reader[0] == threading.get_ident():
            reader.clear()
            reader_ready.set()
            wait(reader_go)
        return original_write(self, *args, **kwargs)

    monkeypatch.setattr(RollupStore, "write", write)
    pending: list[tuple[threading.Thread, list[Any]]] = []

    def b_then_report() -> None:
        finish(*in_thread(lambda: meter.store_readings(
            [Reading("press", "power", T0 + timedelta(days=12, minutes=15 * k), 5.0) for k in range(8)], replace=True
        )))

        def refresh() -> EnergyReport:
            reader.append(threading.get_ident())
            return report(meter, "press", rollups=True)

        pending.append(in_thread(refresh))
        wait(reader_ready)

    # A and B replace readings inside the history (the batch writer's merge path).
    a = [Reading("press", "power", T0 + timedelta(days=3, minutes=15 * k), 70.0) for k in range(8)]
    hook = CommitHook(monkeypatch, b_then_report)
    with hook.armed():
        meter.store_readings(a, replace=True)
    assert hook.ran, "the hook did not run"
    reader_go.set()
    finish(*pending[0])
    assert_rollups_exact(meter, "press")


def test_refreshes_straddling_a_meter_replacement_keep_no_stale_cell(meter: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector's refresh computed cells under the old meter rules and stops before storing
    them; the replacement is recorded; an API request's refresh stores its first cells under the
    new rules and stops; the detector's refresh stores and finishes; the request's refresh finishes.
    Both processed the same change mark (a deleted reading next to the swap)."""
    assert_rollups_exact(meter, "meter")
    info = meter.find_series("meter", "energy_total")
    assert info is not None
    swap_at = T0 + timedelta(days=9, hours=12)
    meter.delete_readings("meter", start=swap_at - timedelta(hours=2), end=swap_at - timedelta(hours=1, minutes=45))
    old = meter.previous_reading(info.id, swap_at)
    new = meter.next_reading(info.id, swap_at + timedelta(minutes=1))
    assert old is not None and new is not None
    without = report(meter, "meter", rollups=False).total_energy_kwh

    detector_ready, detector_go, request_stored, request_go = (threading.Event() for _ in range(4))
    parties: dict[int, str] = {}
    first_store_seen: set[str] = set()
    original_write = RollupStore.write

    def write(self: RollupStore, *args: Any, **kwargs: Any) -> Any:
        party = parties.get(threading.get_ident())
        first = party is not None and party not in first_store_seen
        if first:
            first_store_seen.add(party)  # type: ignore[arg-type]
        if first and party == "detector":
            detector_ready.set()
            wait(detector_go)
        result = original_write(self, *args, **kwargs)
        if first and party == "request":
            request_stored.set()
            wait(request_go)
        return result

    monkeypatch.setattr(RollupStore, "write", write)

    def as_party(name: str) -> Callable[[], EnergyReport]:
        def run() -> EnergyReport:
            parties[threading.get_ident()] = name
            return report(meter, "meter", rollups=True)

        return run

    with separate_processes(monkeypatch):
        detector = in_thread(as_party("detector"))
        wait(detector_ready)
        record_replacement(meter, "meter", ReplacementIn("energy_total", old[0], old[1], new[0], new[1] - 40.0, None, None))
        request = in_thread(as_party("request"))
        wait(request_stored)
        detector_go.set()
        finish(*detector)
        request_go.set()
        answered = finish(*request)
    raw = report(meter, "meter", rollups=False)
    assert raw.total_energy_kwh != pytest.approx(without)  # the replacement changes the energy
    assert_same(answered, raw)  # the request came after the replacement: it answers with it
    assert_rollups_exact(meter, "meter")


def test_a_refresh_overtaken_half_way_through_a_replacement_leaves_it_to_the_next(meter: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a replacement is recorded, one process's refresh has two ranges to recompute (a change
    mark days before the swap, then the swap window) and stops after storing the first; another
    process's refresh runs whole in between. The swap window must still be recomputed by someone."""
    assert_rollups_exact(meter, "meter")
    info = meter.find_series("meter", "energy_total")
    assert info is not None
    swap_at = T0 + timedelta(days=9, hours=12)
    meter.delete_readings("meter", start=T0 + timedelta(days=3), end=T0 + timedelta(days=3, minutes=15))
    old = meter.previous_reading(info.id, swap_at)
    new = meter.next_reading(info.id, swap_at + timedelta(minutes=1))
    assert old is not None and new is not None
    record_replacement(meter, "meter", ReplacementIn("energy_total", old[0], old[1], new[0], new[1] - 40.0, None, None))

    first_stored, first_go = threading.Event(), threading.Event()
    slow: list[int] = []
    original_write = RollupStore.write

    def write(self: RollupStore, *args: Any, **kwargs: Any) -> Any:
        result = original_write(self, *args, **kwargs)
        if slow and slow[0] == threading.get_ident():
            slow.clear()
            first_stored.set()
            wait(first_go)
        return result

    monkeypatch.setattr(RollupStore, "write", write)

    def slow_refresh() -> EnergyReport:
        slow.append(threading.get_ident())
        return report(meter, "meter", rollups=True)

    with separate_processes(monkeypatch):
        pending = in_thread(slow_refresh)
        wait(first_stored)
        finish(*in_thread(lambda: report(meter, "meter", rollups=True)))
        first_go.set()
        finish(*pending)
    assert_rollups_exact(meter, "meter")


def test_a_report_reading_cells_during_a_whole_recompute_answers_exactly(meter: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """A report has refreshed the cells and is about to read them when another process, after the
    asset's rating changed (new meter rules), recomputes the series whole in passes: it has
    dropped the old cells and stored only its first pass."""
    assert_rollups_exact(meter, "press")
    monkeypatch.setattr(energy_rollups, "_BUILD_CELLS", 96 * 4)  # passes of 4 days: the series takes five
    rebuilder_stored, rebuilder_go, = threading.Event(), threading.Event()
    rebuilder: list[int] = []
    original_write = RollupStore.write

    def write(self: RollupStore, *args: Any, **kwargs: Any) -> Any:
        result = original_write(self, *args, **kwargs)
        if rebuilder and rebuilder[0] == threading.get_ident():
            rebuilder.clear()
            rebuilder_stored.set()
            wait(rebuilder_go)
        return result

    monkeypatch.setattr(RollupStore, "write", write)
    original_read = RollupStore.read
    reader: list[int] = []

    def read(self: RollupStore, *args: Any, **kwargs: Any) -> Any:
        if reader and reader[0] == threading.get_ident():
            reader.clear()
            asset = meter.get_asset("press")
            meter.update_asset(Asset(asset.id, asset.site_id, asset.name, asset.kind, rated_power_kw=22.5))

            def rebuild() -> EnergyReport:
                rebuilder.append(threading.get_ident())
                return report(meter, "press", rollups=True)

            pending = in_thread(rebuild)
            wait(rebuilder_stored)
            try:
                return original_read(self, *args, **kwargs)
            finally:
                rebuilder_go.set()
                finish(*pending)
        return original_read(self, *args, **kwargs)

    monkeypatch.setattr(RollupStore, "read", read)
    with separate_processes(monkeypatch):
        reader.append(threading.get_ident())
        answered = report(meter, "press", rollups=True)
    assert not reader, "the hook did not run"
    # The rating changed while the report was being answered: it answers under the old rules or
    # the new ones, never with cells missing.
    raw_new = report(meter, "press", rollups=False)
    asset = meter.get_asset("press")
    meter.update_asset(Asset(asset.id, asset.site_id, asset.name, asset.kind, rated_power_kw=None))
    raw_old = report(meter, "press", rollups=False)
    assert raw_new.total_energy_kwh != pytest.approx(raw_old.total_energy_kwh)  # the rating matters
    try:
        assert_same(answered, raw_old)
    except AssertionError:
        assert_same(answered, raw_new)
    assert_rollups_exact(meter, "press")


#: One process of the test below: ``rounds`` rounds of a random change to both meters (corrected
#: power readings; counter readings deleted and written back) and a report of each from rollups;
#: the process with seed 0 records a meter replacement half way.
_WRITER = """
import random, sys
from datetime import timedelta
from pathlib import Path
from digitaltwin.config import Settings
from digitaltwin.domain.readings import Reading
from digitaltwin.storage.db import make_engine
from digitaltwin.storage.meter_events import MeterEventStore
from digitaltwin.storage.repository import Repository
from tests.integration.test_energy_rollups_races import DAYS, T0, counter_values, report

database_url, data_dir, seed, rounds = sys.argv[1] or None, Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
repo = Repository(make_engine(Settings(_env_file=None, ENVIRONMENT="test", DATABASE_URL=database_url, DATA_DIR=data_dir)))
rng = random.Random(seed)
at = lambda k: T0 + timedelta(minutes=15 * k)
for i in range(rounds):
    k, n = rng.randrange(96 * DAYS - 8), rng.randrange(1, 7)
    repo.store_readings([Reading("press", "power", at(j), rng.uniform(20.0, 60.0)) for j in range(k, k + n)], replace=True)
    repo.delete_readings("meter", start=at(k), end=at(k + n))
    report(repo, "meter", rollups=True)
    repo.write_readings([Reading("meter", "energy_total", at(j), counter_values(j)) for j in range(k, k + n)])
    if seed == 0 and i == rounds // 2:
        info = repo.find_series("meter", "energy_total")
        swap = 96 * 9 + 48
        MeterEventStore(repo.engine).add_replacement(info.id, old=(at(swap), counter_values(swap)), new=(at(swap + 1), counter_values(swap + 1) - 40.0))
    report(repo, "press", rollups=True)
print("done", flush=True)
"""


def test_processes_writing_and_reading_at_once_leave_exact_rollups(meter: Repository, settings: Settings) -> None:
    """Two processes and this one at once (no hooks): the cells equal the raw path afterwards."""
    assert_rollups_exact(meter, "meter")
    assert_rollups_exact(meter, "press")
    args = [settings.database_url or "", str(settings.data_dir)]
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, *args, str(seed), "25"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (0, 1)
    ]
    try:
        for _ in range(200):  # this process reads while they write (bounded; they take a few seconds)
            if all(w.poll() is not None for w in writers):
                break
            report(meter, "meter", rollups=True)
            report(meter, "press", rollups=True)
        outputs = [w.communicate(timeout=120) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    for w, (out, err) in zip(writers, outputs, strict=True):
        assert w.returncode == 0 and out.strip() == "done", err
    assert MeterEventStore(meter.engine).replacements(meter.find_series("meter", "energy_total").id)  # type: ignore[union-attr]
    assert_rollups_exact(meter, "meter")
    assert_rollups_exact(meter, "press")
