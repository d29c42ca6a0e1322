"""The alarm service: detections in, stored alarms, stream events, notifications and metrics out.

:meth:`AlarmService.apply` takes the detections of any detector, applies the life cycle of
:mod:`digitaltwin.monitoring.alarms` to the open alarm of each asset and type (one query for
all of them), stores what changed in one transaction (one commit for the batch, whatever the
number of alarms it changes), then, outside the storage work, publishes ``event: alarm``
on the asset's live stream, queues webhook notifications (raised, escalated, acknowledged,
cleared; never waiting on them) and refreshes the ``alarms_active{severity,type}`` gauge.
Operators acknowledge and clear through :meth:`acknowledge` and :meth:`clear` (audited by the
API). Raised alarms are also logged at WARNING.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from digitaltwin.monitoring import alarms as life
from digitaltwin.monitoring.alarms import Alarm, Change, Detection, Hysteresis
from digitaltwin.observability.metrics import Metrics
from digitaltwin.services.live_state import LiveState
from digitaltwin.services.webhooks import WebhookNotifier, alarm_payload
from digitaltwin.storage.monitoring_store import MonitoringStore
from digitaltwin.storage.repository import Repository

log = logging.getLogger(__name__)

#: Changes that are published on the stream and notified.
_NOTIFIED = {Change.RAISED: "raised", Change.ESCALATED: "escalated", Change.CLEARED: "cleared"}


@dataclass(frozen=True, slots=True)
class Applied:
    """What one detection did: the change and the alarm after it."""

    change: Change
    alarm: Alarm


class AlarmService:
    """See the module docstring.

    Args:
        store: the monitoring tables.
        repo: storage (the site of each asset).
        metrics: ``alarms_active`` is refreshed after each change.
        notifier: webhook deliveries (None: no notifications).
        live: the live stream (None: no stream events).
        hysteresis: inactive evaluations that clear an alarm.
        on_change: called with every :class:`Applied` that is notified (e.g. drift triggers retraining).
    """

    def __init__(self, store: MonitoringStore, repo: Repository, *, metrics: Metrics | None = None,
                 notifier: WebhookNotifier | None = None, live: LiveState | None = None,
                 hysteresis: Hysteresis = Hysteresis(), clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_change: Sequence[Callable[[Applied], None]] = ()) -> None:
        self.store, self.repo, self.metrics = store, repo, metrics
        self.notifier, self.live, self.hysteresis, self.clock = notifier, live, hysteresis, clock
        self.on_change = list(on_change)
        self._sites: dict[str, str] = {}
        self._lock = threading.Lock()  # one life-cycle step per process at a time; the unique key guards across processes
        self._gauge_labels: set[tuple[str, str]] = set()

    def _site_ids(self, asset_ids: set[str]) -> dict[str, str]:
        missing = asset_ids - self._sites.keys()
        if missing:
            self._sites.update(self.repo.asset_sites(missing))
        return self._sites

    def apply(self, detections: Sequence[Detection]) -> list[Applied]:
        """Apply detections (several of one asset and type are applied in order); returns the changes
        other than :attr:`Change.NONE`. Detections of unknown assets are skipped (logged)."""
        if not detections:
            return []
        out: list[Applied] = []
        with self._lock:
            sites = self._site_ids({d.asset_id for d in detections})
            current = self.store.open_alarms({(d.asset_id, d.type) for d in detections})
            now = self.clock()
            with self.store.alarm_writes() as writes:
                pending: dict[int | None, Alarm] = {}  # changed stored alarms, written together

                def flush() -> None:
                    writes.update(list(pending.values()))
                    pending.clear()

                for detection in detections:
                    site_id = sites.get(detection.asset_id)
                    if site_id is None:
                        log.warning("detection of unknown asset %r (%s) skipped", detection.asset_id, detection.type)
                        continue
                    key = (detection.asset_id, detection.type)
                    change, alarm = life.transition(current.get(key), detection, site_id=site_id, now=now,
                                                    hysteresis=self.hysteresis)
                    if change is Change.NONE or alarm is None:
                        continue
                    if change is Change.RAISED:
                        flush()  # in order: an alarm of this key cleared just before must be written first
                        stored = writes.insert(alarm)
                        if stored is None:  # raised by another process meanwhile: continue from its row
                            current.update(writes.open_alarms([key]))
                            change, alarm = life.transition(current.get(key), detection, site_id=site_id, now=now,
                                                            hysteresis=self.hysteresis)
                            if alarm is None or change is Change.NONE:
                                continue
                            if change is Change.RAISED:
                                continue  # it was cleared meanwhile as well; the next evaluation raises it
                            pending[alarm.id] = alarm
                        else:
                            alarm = stored
                    else:
                        pending[alarm.id] = alarm
                    current[key] = alarm
                    out.append(Applied(change, alarm))
                flush()
        notified = [a for a in out if a.change in _NOTIFIED]
        for applied in notified:
            if applied.change is Change.RAISED:
                log.warning("alarm %s raised: %s on %s (%s) %s", applied.alarm.id, applied.alarm.type, applied.alarm.asset_id,
                            applied.alarm.severity.value, applied.alarm.evidence)
            self._announce(applied.alarm, _NOTIFIED[applied.change])
            for listener in self.on_change:
                try:
                    listener(applied)
                except Exception:  # noqa: BLE001 - e.g. a retraining that cannot start never stops detection
                    log.exception("alarm listener %r failed", listener)
        if notified:
            self.refresh_gauge()
        return out

    def _announce(self, alarm: Alarm, event: str) -> None:
        """Stream event and webhook notifications of ``event``; failures are logged, never raised."""
        if self.live is not None:
            try:
                self.live.publish(alarm.asset_id, [alarm_payload(alarm, event)])
            except Exception:  # noqa: BLE001 - Redis down: the alarm is stored and notified anyway
                log.warning("alarm %s %s not streamed", alarm.id, event, exc_info=True)
        if self.notifier is not None:
            self.notifier.notify(alarm, event)

    def acknowledge(self, alarm_id: int, *, by: str, comment: str | None) -> Alarm:
        """Acknowledge an active alarm (see :func:`digitaltwin.monitoring.alarms.acknowledge` for errors)."""
        with self._lock:
            alarm = life.acknowledge(self.store.get_alarm(alarm_id), by=by, comment=comment, now=self.clock())
            self.store.update_alarm(alarm)
        self._announce(alarm, "acknowledged")
        return alarm

    def clear(self, alarm_id: int, *, by: str, comment: str | None) -> Alarm:
        """Clear an open alarm by hand (see :func:`digitaltwin.monitoring.alarms.clear` for errors)."""
        with self._lock:
            alarm = life.clear(self.store.get_alarm(alarm_id), by=by, comment=comment, now=self.clock())
            self.store.update_alarm(alarm)
        self._announce(alarm, "cleared")
        self.refresh_gauge()
        return alarm

    def refresh_gauge(self) -> None:
        """Set ``alarms_active{severity,type}`` from storage (label pairs that emptied go to 0)."""
        if self.metrics is None:
            return
        try:
            counts = self.store.active_counts()
        except Exception:  # noqa: BLE001 - the gauge is refreshed at the next change
            log.warning("alarms_active not refreshed", exc_info=True)
            return
        for key in self._gauge_labels - counts.keys():
            self.metrics.alarms_active.labels(*key).set(0)
        for key, count in counts.items():
            self.metrics.alarms_active.labels(*key).set(count)
        self._gauge_labels |= counts.keys()

