"""Storage of monitoring: issued forecasts and their points, alarms, webhooks and deliveries.

Beside :class:`~digitaltwin.storage.repository.Repository` (readings, assets) as the security
store is: the only code that touches these tables. Alarms are deduplicated by the unique
``open_key`` (``"<asset_id>|<type>"`` while open, NULL once cleared), so two processes raising
the same alarm at once store one: the loser's insert fails and it updates the winner's row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from digitaltwin.domain.errors import NotFoundError
from digitaltwin.monitoring.alarms import Alarm, AlarmState, Severity
from digitaltwin.storage.tables import (
    alarm_notifications,
    alarms,
    detector_settings,
    issued_forecast_points,
    issued_forecasts,
    readings,
    series,
    webhooks,
)


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    """One point of an issued forecast: interval start (UTC), kWh, quantiles by level (kWh)."""

    ts: datetime
    value: float
    quantiles: dict[float, float] | None = None


@dataclass(frozen=True, slots=True)
class IssuedForecast:
    """A stored forecast (without its points)."""

    id: int
    asset_id: str
    source: str
    issued_at: datetime
    step_s: int
    points: int


@dataclass(frozen=True, slots=True)
class Webhook:
    """A notification target: alarms of ``site_id`` (any site when None) at ``min_severity`` or above."""

    id: int
    url: str
    secret: str
    site_id: str | None
    min_severity: Severity
    created_at: datetime
    created_by: str | None

    def wants(self, alarm: Alarm) -> bool:
        return (self.site_id is None or self.site_id == alarm.site_id) and alarm.severity.rank >= self.min_severity.rank


@dataclass(frozen=True, slots=True)
class SeriesFreshness:
    """A series with its newest reading's timestamp (None when it has none) and declared interval."""

    asset_id: str
    series_id: int
    quantity: str
    interval_seconds: int | None
    last_ts: datetime | None


def _open_key(asset_id: str, type_: str) -> str:
    return f"{asset_id}|{type_}"


def _alarm(row: Any) -> Alarm:
    return Alarm(
        id=row.id, asset_id=row.asset_id, site_id=row.site_id, type=row.type, severity=Severity(row.severity),
        state=AlarmState(row.state), started_at=row.started_at, last_seen_at=row.last_seen_at, score=row.score,
        evidence=dict(row.evidence or {}), inactive_count=row.inactive_count,
        acknowledged_at=row.acknowledged_at, acknowledged_by=row.acknowledged_by, acknowledged_comment=row.acknowledged_comment,
        cleared_at=row.cleared_at, cleared_by=row.cleared_by, cleared_comment=row.cleared_comment,
    )


def _values(alarm: Alarm) -> dict[str, Any]:
    return {
        "asset_id": alarm.asset_id, "site_id": alarm.site_id, "type": alarm.type, "severity": alarm.severity.value,
        "state": alarm.state.value, "open_key": _open_key(alarm.asset_id, alarm.type) if alarm.open else None,
        "started_at": alarm.started_at, "last_seen_at": alarm.last_seen_at, "score": alarm.score,
        "evidence": alarm.evidence, "inactive_count": alarm.inactive_count,
        "acknowledged_at": alarm.acknowledged_at, "acknowledged_by": alarm.acknowledged_by,
        "acknowledged_comment": alarm.acknowledged_comment, "cleared_at": alarm.cleared_at,
        "cleared_by": alarm.cleared_by, "cleared_comment": alarm.cleared_comment,
    }


class AlarmWrites:
    """Alarm writes inside one transaction (:meth:`MonitoringStore.alarm_writes`), in the order made."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert(self, alarm: Alarm) -> Alarm | None:
        """:meth:`MonitoringStore.insert_alarm` inside the transaction (a savepoint undoes a conflicting insert alone)."""
        try:
            with self.conn.begin_nested():
                alarm_id = self.conn.execute(insert(alarms).values(**_values(alarm)).returning(alarms.c.id)).scalar_one()
        except IntegrityError:
            return None
        return replace(alarm, id=alarm_id)

    def update(self, stored: Sequence[Alarm]) -> None:
        """Write alarms (each stored before) back: one statement, executed for each."""
        if stored:
            self.conn.execute(update(alarms).where(alarms.c.id == bindparam("alarm_id")),
                              [{"alarm_id": a.id, **_values(a)} for a in stored])

    def open_alarms(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Alarm]:
        """The open alarms of ``keys`` as this transaction sees them (others' committed rows included)."""
        wanted = sorted({_open_key(a, t) for a, t in keys})
        rows = self.conn.execute(select(alarms).where(alarms.c.open_key.in_(wanted))).all() if wanted else []
        return {(r.asset_id, r.type): _alarm(r) for r in rows}


class MonitoringStore:
    """Reads and writes the monitoring tables of ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- issued forecasts -----------------------------------------------------------------
    def save_forecast(self, asset_id: str, source: str, issued_at: datetime, step_s: int,
                      points: Sequence[ForecastPoint]) -> IssuedForecast:
        """Store a forecast as issued; lead time of a point = its ``ts`` minus ``issued_at`` (s)."""
        with self.engine.begin() as conn:
            forecast_id = conn.execute(
                insert(issued_forecasts).values(asset_id=asset_id, source=source, issued_at=issued_at, step_s=step_s,
                                                points=len(points)).returning(issued_forecasts.c.id)
            ).scalar_one()
            if points:
                conn.execute(insert(issued_forecast_points), [
                    {"forecast_id": forecast_id, "ts": p.ts, "asset_id": asset_id, "source": source,
                     "lead_time_s": int((p.ts - issued_at).total_seconds()), "value": float(p.value),
                     "quantiles": {repr(float(k)): float(v) for k, v in p.quantiles.items()} if p.quantiles else None}
                    for p in points
                ])
        return IssuedForecast(forecast_id, asset_id, source, issued_at, step_s, len(points))

    def forecasts(self, asset_id: str, *, source: str | None = None, since: datetime | None = None,
                  limit: int = 100) -> list[IssuedForecast]:
        """Issued forecasts of ``asset_id``, newest first."""
        t = issued_forecasts
        q = select(t).where(t.c.asset_id == asset_id)
        if source is not None:
            q = q.where(t.c.source == source)
        if since is not None:
            q = q.where(t.c.issued_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.issued_at.desc(), t.c.id.desc()).limit(limit)).all()
        return [IssuedForecast(r.id, r.asset_id, r.source, r.issued_at, r.step_s, r.points) for r in rows]

    def forecast_points(self, asset_id: str, *, start: datetime, end: datetime, source: str | None = None) -> pd.DataFrame:
        """Points of ``asset_id`` with ``start <= ts < end`` as the frame :func:`~digitaltwin.monitoring.skill.skill_table`
        takes (the outermost quantile pair of each point in ``q_low``/``q_high`` with its levels)."""
        p = issued_forecast_points
        q = select(p.c.source, p.c.ts, p.c.lead_time_s, p.c.value, p.c.quantiles).where(
            p.c.asset_id == asset_id, p.c.ts >= start, p.c.ts < end)
        if source is not None:
            q = q.where(p.c.source == source)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        records = []
        for r in rows:
            lo = hi = lo_level = hi_level = float("nan")
            if r.quantiles and len(r.quantiles) >= 2:
                levels = sorted(r.quantiles, key=float)
                lo_level, hi_level = float(levels[0]), float(levels[-1])
                lo, hi = float(r.quantiles[levels[0]]), float(r.quantiles[levels[-1]])
            records.append((r.source, pd.Timestamp(r.ts), r.lead_time_s, r.value, lo, hi, lo_level, hi_level))
        return pd.DataFrame.from_records(
            records, columns=["source", "ts", "lead_time_s", "value", "q_low", "q_high", "q_low_level", "q_high_level"]
        )

    def last_issued(self, asset_id: str, source_prefix: str) -> datetime | None:
        """Issue time of the newest forecast of ``asset_id`` whose source starts with ``source_prefix``."""
        t = issued_forecasts
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(t.c.issued_at)).where(t.c.asset_id == asset_id, t.c.source.startswith(source_prefix))
            ).scalar()

    # -- alarms ---------------------------------------------------------------------------
    def open_alarms(self, keys: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], Alarm]:
        """Open alarms by ``(asset_id, type)``: of ``keys`` only when given (one query per 500 keys)."""
        out: dict[tuple[str, str], Alarm] = {}
        with self.engine.connect() as conn:
            if keys is None:
                rows = conn.execute(select(alarms).where(alarms.c.open_key.is_not(None))).all()
            else:
                wanted = sorted({_open_key(a, t) for a, t in keys})
                rows = []
                for i in range(0, len(wanted), 500):
                    rows.extend(conn.execute(select(alarms).where(alarms.c.open_key.in_(wanted[i:i + 500]))).all())
        for row in rows:
            alarm = _alarm(row)
            out[(alarm.asset_id, alarm.type)] = alarm
        return out

    def insert_alarm(self, alarm: Alarm) -> Alarm | None:
        """Store a new open alarm; None when one of its asset and type is open already (raised elsewhere)."""
        try:
            with self.engine.begin() as conn:
                alarm_id = conn.execute(insert(alarms).values(**_values(alarm)).returning(alarms.c.id)).scalar_one()
        except IntegrityError:
            return None
        return replace(alarm, id=alarm_id)

    def update_alarm(self, alarm: Alarm) -> None:
        """Write ``alarm`` (stored before) back."""
        with self.engine.begin() as conn:
            conn.execute(update(alarms).where(alarms.c.id == alarm.id).values(**_values(alarm)))

    @contextmanager
    def alarm_writes(self) -> Iterator[AlarmWrites]:
        """One transaction for the alarm changes of a batch of detections (committed at the end,
        rolled back when the block raises): one commit instead of one per changed alarm."""
        with self.engine.begin() as conn:
            yield AlarmWrites(conn)

    def get_alarm(self, alarm_id: int) -> Alarm:
        """Raises: NotFoundError naming ``alarm_id``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).first()
        if row is None:
            raise NotFoundError(f"alarm {alarm_id} not found", field="alarm_id")
        return _alarm(row)

    def list_alarms(self, *, site_id: str | None = None, asset_id: str | None = None, severity: Sequence[str] = (),
                    state: Sequence[str] = (), type_: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, limit: int = 100, before_id: int | None = None) -> list[Alarm]:
        """Alarms matching every filter given, newest first (by id); ``since``/``until`` bound
        ``last_seen_at``/``started_at`` (the alarm overlaps the span)."""
        conditions = []
        if site_id is not None:
            conditions.append(alarms.c.site_id == site_id)
        if asset_id is not None:
            conditions.append(alarms.c.asset_id == asset_id)
        if severity:
            conditions.append(alarms.c.severity.in_(list(severity)))
        if state:
            conditions.append(alarms.c.state.in_(list(state)))
        if type_ is not None:
            conditions.append(alarms.c.type == type_)
        if since is not None:
            conditions.append(alarms.c.last_seen_at >= since)
        if until is not None:
            conditions.append(alarms.c.started_at < until)
        if before_id is not None:
            conditions.append(alarms.c.id < before_id)
        q = select(alarms).where(and_(True, *conditions)).order_by(alarms.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_alarm(r) for r in conn.execute(q).all()]

    def active_counts(self) -> dict[tuple[str, str], int]:
        """Open alarms by ``(severity, type)``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alarms.c.severity, alarms.c.type, func.count()).where(alarms.c.open_key.is_not(None))
                .group_by(alarms.c.severity, alarms.c.type)
            ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- webhooks -------------------------------------------------------------------------
    def create_webhook(self, *, url: str, secret: str, site_id: str | None, min_severity: Severity,
                       created_at: datetime, created_by: str | None) -> Webhook:
        with self.engine.begin() as conn:
            hook_id = conn.execute(insert(webhooks).values(
                url=url, secret=secret, site_id=site_id, min_severity=min_severity.value, created_at=created_at,
                created_by=created_by).returning(webhooks.c.id)).scalar_one()
        return Webhook(hook_id, url, secret, site_id, min_severity, created_at, created_by)

    def list_webhooks(self) -> list[Webhook]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(webhooks).order_by(webhooks.c.id)).all()
        return [Webhook(r.id, r.url, r.secret, r.site_id, Severity(r.min_severity), r.created_at, r.created_by) for r in rows]

    def delete_webhook(self, webhook_id: int) -> None:
        """Raises: NotFoundError naming ``webhook_id``."""
        with self.engine.begin() as conn:
            if conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id)).rowcount == 0:
                raise NotFoundError(f"webhook {webhook_id} not found", field="webhook_id")

    def add_notification(self, alarm_id: int, webhook_id: int, event: str, created_at: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(alarm_notifications).values(
                alarm_id=alarm_id, webhook_id=webhook_id, event=event, result="pending", attempts=0, created_at=created_at,
            ).returning(alarm_notifications.c.id)).scalar_one()

    def finish_notification(self, notification_id: int, *, result: str, attempts: int, status_code: int | None,
                            error: str | None, finished_at: datetime | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(alarm_notifications).where(alarm_notifications.c.id == notification_id).values(
                result=result, attempts=attempts, status_code=status_code, error=error, finished_at=finished_at))

    def notifications(self, alarm_id: int) -> list[dict[str, Any]]:
        """Delivery records of ``alarm_id``, oldest first."""
        n = alarm_notifications
        with self.engine.connect() as conn:
            rows = conn.execute(select(n).where(n.c.alarm_id == alarm_id).order_by(n.c.id)).all()
        return [dict(r._mapping) for r in rows]

    # -- freshness ------------------------------------------------------------------------
    def series_freshness(self) -> list[SeriesFreshness]:
        """Every series with its newest reading's timestamp: one index seek per series (a correlated
        ``max(ts)`` on the ``(series_id, ts)`` key), not a scan of the readings."""
        newest = select(func.max(readings.c.ts)).where(readings.c.series_id == series.c.id).scalar_subquery()
        q = select(series.c.asset_id, series.c.id, series.c.quantity, series.c.interval_seconds, newest.label("last_ts"))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        last_type = readings.c.ts.type
        dialect = self.engine.dialect
        out = []
        for r in rows:
            last = r.last_ts
            if last is not None and not isinstance(last, datetime):  # SQLite max() returns the raw epoch microseconds
                last = last_type.process_result_value(last, dialect)
            out.append(SeriesFreshness(r.asset_id, r.id, r.quantity, r.interval_seconds, last))
        return out

    # -- detector settings ----------------------------------------------------------------
    def detector_settings(self, *, asset_id: str | None = None, detector: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """Stored settings by ``(asset_id, detector)`` (of one asset or detector when given)."""
        t = detector_settings
        q = select(t.c.asset_id, t.c.detector, t.c.settings)
        if asset_id is not None:
            q = q.where(t.c.asset_id == asset_id)
        if detector is not None:
            q = q.where(t.c.detector == detector)
        with self.engine.connect() as conn:
            return {(r.asset_id, r.detector): dict(r.settings) for r in conn.execute(q).all()}

    def put_detector_settings(self, asset_id: str, detector: str, settings: dict[str, Any], *, at: datetime,
                              by: str | None) -> None:
        """Replace the settings of ``detector`` for ``asset_id`` (an empty object removes them)."""
        t = detector_settings
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.asset_id == asset_id, t.c.detector == detector))
            if settings:
                conn.execute(insert(t).values(asset_id=asset_id, detector=detector, settings=settings, updated_at=at,
                                              updated_by=by))
