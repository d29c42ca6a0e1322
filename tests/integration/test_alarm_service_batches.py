"""The alarm life cycle applied to many detections at once: every change stored, in order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digitaltwin.domain.assets import Asset, AssetKind, Site
from digitaltwin.monitoring.alarms import AlarmState, Detection, Hysteresis, Severity
from digitaltwin.services.alarms import AlarmService
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository

T = datetime(2026, 3, 2, 10, tzinfo=UTC)


def detection(asset_id: str, active: bool, score: float = 5.0, hour: int = 0) -> Detection:
    start = T + timedelta(hours=hour)
    return Detection(asset_id, "profile_residual", Severity.WARNING, start, start + timedelta(hours=1), score,
                     {"actual": score}, active=active)


def test_updates_of_one_batch_are_all_stored(repo: Repository) -> None:
    repo.create_site(Site("s", "s", "UTC"))
    assets = [f"m{i:02d}" for i in range(30)]
    for asset_id in assets:
        repo.create_asset(Asset(asset_id, "s", asset_id, AssetKind.METER))
    store = MonitoringStore(repo.engine)
    service = AlarmService(store, repo, hysteresis=Hysteresis(2))
    assert len(service.apply([detection(a, True) for a in assets])) == 30
    changes = service.apply([detection(a, True, score=6.0 + i, hour=1) for i, a in enumerate(assets)]
                            + [detection(a, False, hour=2) for a in assets[:10]])
    assert [c.change.value for c in changes].count("updated") == 30 and [c.change.value for c in changes].count("clearing") == 10
    stored = store.open_alarms()
    assert {a: (stored[(a, "profile_residual")].score, stored[(a, "profile_residual")].inactive_count) for a in assets} == {
        a: (6.0 + i, 1 if i < 10 else 0) for i, a in enumerate(assets)
    }


def test_an_alarm_cleared_and_raised_again_in_one_batch(repo: Repository) -> None:
    """The clearing is written before the new alarm of the same asset and type is inserted."""
    repo.create_site(Site("s", "s", "UTC"))
    repo.create_asset(Asset("m", "s", "m", AssetKind.METER))
    store = MonitoringStore(repo.engine)
    service = AlarmService(store, repo, hysteresis=Hysteresis(1))
    first = service.apply([detection("m", True)])[0].alarm
    changes = service.apply([detection("m", False, hour=1), detection("m", True, score=9.0, hour=2)])
    assert [c.change.value for c in changes] == ["cleared", "raised"]
    assert store.get_alarm(first.id).state is AlarmState.CLEARED
    second = store.open_alarms()[("m", "profile_residual")]
    assert second.id != first.id and second.score == 9.0 and second.state is AlarmState.ACTIVE


def test_an_alarm_raised_meanwhile_by_another_process_is_continued(repo: Repository) -> None:
    """The insert conflicts with the other process's open alarm inside the batch's transaction: the
    savepoint undoes it alone and the detection updates the other process's alarm."""
    repo.create_site(Site("s", "s", "UTC"))
    repo.create_asset(Asset("m", "s", "m", AssetKind.METER))
    other = AlarmService(MonitoringStore(repo.engine), repo)
    raised = other.apply([detection("m", True)])[0].alarm

    class Stale(MonitoringStore):
        def open_alarms(self, keys=None):  # type: ignore[no-untyped-def]
            return {}  # read before the other process raised its alarm

    store = Stale(repo.engine)
    changes = AlarmService(store, repo).apply([detection("m", True, score=8.0, hour=1), detection("n-unknown", True)])
    assert [(c.change.value, c.alarm.id) for c in changes] == [("updated", raised.id)]
    assert MonitoringStore(repo.engine).open_alarms()[("m", "profile_residual")].score == 8.0
