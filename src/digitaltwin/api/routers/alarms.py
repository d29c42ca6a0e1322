"""Alarms (list, detail, acknowledge, clear), the webhooks they are notified to, per-asset detector settings.

Reads need a viewer; acknowledging and clearing need an operator and are written to the
audit log with the comment; webhooks are admin-only (their secrets sign notifications).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from digitaltwin.api.deps import AppState, State
from digitaltwin.api.monitoring_schemas import AlarmOut, CommentIn, WebhookIn, WebhookOut
from digitaltwin.domain.errors import DomainError, ValidationError
from digitaltwin.domain.timestamps import parse_instant
from digitaltwin.monitoring import alarm_settings as detector_settings
from digitaltwin.monitoring.alarms import Severity
from digitaltwin.observability.changes import record_change
from digitaltwin.security.audit import AuditEvent
from digitaltwin.security.policy import access
from digitaltwin.security.roles import Role
from digitaltwin.services.monitoring import Monitoring
from digitaltwin.services.webhook_targets import ForbiddenTarget

router = APIRouter(prefix="/api/v1", tags=["alarms"])

#: Ids are 32-bit integers in storage; larger ones are a 422 naming the parameter, not a database error.
MAX_ID = 2**31 - 1
AlarmId = Annotated[int, Path(ge=1, le=MAX_ID)]
WebhookId = Annotated[int, Path(ge=1, le=MAX_ID)]


class MonitoringUnavailableError(DomainError):
    """The app runs without its monitoring parts (HTTP 503)."""

    status_code = 503


def monitoring_of(state: AppState) -> Monitoring:
    """The app's monitoring parts, or 503 when it runs without them."""
    if state.monitoring is None:
        raise MonitoringUnavailableError("monitoring is not running in this process")
    return state.monitoring


def _actor(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return getattr(principal, "label", None) or "unknown"


@router.get("/alarms", response_model=list[AlarmOut])
def list_alarms(
    state: State,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    asset_id: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[list[Literal["info", "warning", "critical"]] | None, Query(description="repeat for several")] = None,
    alarm_state: Annotated[
        list[Literal["active", "acknowledged", "cleared"]] | None, Query(alias="state", description="repeat for several")
    ] = None,
    type: Annotated[str | None, Query(max_length=48, description="e.g. stale_device, forecast_drift")] = None,  # noqa: A002
    since: Annotated[str | None, Query(description="RFC 3339: alarms last seen at or after it")] = None,
    until: Annotated[str | None, Query(description="RFC 3339: alarms started before it")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="page: alarms stored before this id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlarmOut]:
    """Alarms matching every filter, newest first; page with ``before_id`` (the last ``id`` of a page).
    422 naming ``since``/``until`` for an instant without a UTC offset."""
    start = None if since is None else parse_instant(since, field="since", plausible=False)
    end = None if until is None else parse_instant(until, field="until", plausible=False)
    alarms = monitoring_of(state).store.list_alarms(
        site_id=site_id, asset_id=asset_id, severity=severity or (), state=alarm_state or (), type_=type,
        since=start, until=end, limit=limit, before_id=before_id,
    )
    return [AlarmOut.of(a) for a in alarms]


@router.get("/alarms/{alarm_id}", response_model=AlarmOut)
def get_alarm(alarm_id: AlarmId, state: State) -> AlarmOut:
    """One alarm with its webhook deliveries (attempts, result, status code, error). 404 naming ``alarm_id``."""
    store = monitoring_of(state).store
    return AlarmOut.of(store.get_alarm(alarm_id), store.notifications(alarm_id))


@router.post("/alarms/{alarm_id}/acknowledge", response_model=AlarmOut)
async def acknowledge_alarm(alarm_id: AlarmId, body: CommentIn, state: State, request: Request) -> AlarmOut:
    """Acknowledge an active alarm (operator): it stays open until its condition ends or it is cleared.
    409 naming ``state`` when it is not active; audited (``alarm_acknowledged``) with the comment."""
    alarm = await run_in_threadpool(monitoring_of(state).alarms.acknowledge, alarm_id, by=_actor(request), comment=body.comment)
    record_change(request, AuditEvent.ALARM_ACKNOWLEDGED, subject=str(alarm_id), asset_id=alarm.asset_id,
                  type=alarm.type, comment=body.comment)
    return AlarmOut.of(alarm)


@router.post("/alarms/{alarm_id}/clear", response_model=AlarmOut)
async def clear_alarm(alarm_id: AlarmId, body: CommentIn, state: State, request: Request) -> AlarmOut:
    """Clear an open alarm by hand (operator); if its condition persists the next detection opens a
    new one. 409 naming ``state`` when already cleared; audited (``alarm_cleared``) with the comment."""
    alarm = await run_in_threadpool(monitoring_of(state).alarms.clear, alarm_id, by=_actor(request), comment=body.comment)
    record_change(request, AuditEvent.ALARM_CLEARED, subject=str(alarm_id), asset_id=alarm.asset_id,
                  type=alarm.type, comment=body.comment)
    return AlarmOut.of(alarm)


def masked_url(url: str) -> str:
    """``url`` with the password of its user information replaced by ``***`` (``https://u:***@host/``),
    for answers and the audit log; the stored URL keeps it for deliveries."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _webhook_out(hook: object) -> WebhookOut:
    return WebhookOut(id=hook.id, url=masked_url(hook.url), site_id=hook.site_id, min_severity=hook.min_severity.value,  # type: ignore[attr-defined]
                      created_at=hook.created_at, created_by=hook.created_by)  # type: ignore[attr-defined]


@router.get("/webhooks", response_model=list[WebhookOut], openapi_extra=access(Role.ADMIN))
def list_webhooks(state: State) -> list[WebhookOut]:
    """Alarm webhooks (admin); secrets are never returned."""
    return [_webhook_out(h) for h in monitoring_of(state).store.list_webhooks()]


@router.post("/webhooks", response_model=WebhookOut, status_code=201, openapi_extra=access(Role.ADMIN))
def create_webhook(body: WebhookIn, state: State, request: Request) -> WebhookOut:
    """Notify alarm events of ``site_id`` (all sites when omitted) at ``min_severity`` or above to ``url``,
    signed with ``secret`` (docs/alarms.md). 404 naming ``site_id`` for an unknown site; 422 naming ``url``
    for a host that is or resolves to a non-public address outside ``WEBHOOK_ALLOWED_NETWORKS``; audited."""
    monitoring = monitoring_of(state)
    try:
        monitoring.notifier.targets.check(str(body.url), unresolved_ok=True)
    except ForbiddenTarget as exc:
        raise ValidationError(str(exc), field="url") from None
    if body.site_id is not None:
        state.repo.get_site(body.site_id)
    hook = monitoring.store.create_webhook(
        url=str(body.url), secret=body.secret, site_id=body.site_id, min_severity=Severity(body.min_severity),
        created_at=datetime.now(UTC), created_by=_actor(request),
    )
    monitoring.notifier.invalidate()
    record_change(request, AuditEvent.WEBHOOK_CREATED, subject=str(hook.id), url=masked_url(hook.url), site_id=hook.site_id,
                  min_severity=hook.min_severity.value)
    return _webhook_out(hook)


@router.delete("/webhooks/{webhook_id}", status_code=204, openapi_extra=access(Role.ADMIN))
def delete_webhook(webhook_id: WebhookId, state: State, request: Request) -> Response:
    """Stop notifying a webhook (admin); its delivery records go with it. 404 naming ``webhook_id``; audited."""
    monitoring = monitoring_of(state)
    monitoring.store.delete_webhook(webhook_id)
    monitoring.notifier.invalidate()
    record_change(request, AuditEvent.WEBHOOK_DELETED, subject=str(webhook_id))
    return Response(status_code=204)


@router.get("/assets/{asset_id}/detector-settings", response_model=dict[str, dict[str, Any]])
def get_detector_settings(asset_id: str, state: State) -> dict[str, dict[str, Any]]:
    """The asset's own detector settings by detector (those without any use the configured defaults).
    404 naming ``asset_id``."""
    state.repo.get_asset(asset_id)
    return {d: v for (_, d), v in monitoring_of(state).store.detector_settings(asset_id=asset_id).items()}


@router.put("/assets/{asset_id}/detector-settings/{detector}", response_model=dict[str, Any])
def put_detector_settings(asset_id: str, detector: str, body: dict[str, Any], state: State, request: Request) -> dict[str, Any]:
    """Set the asset's settings of one detector (operator), e.g. ``stale_device``
    ``{"missed_intervals": 4, "critical_intervals": 24}`` or ``forecast_drift`` ``{"factor": 2.0}``;
    ``{}`` goes back to the defaults. Checked by the detector's rules: 422 naming ``detector`` or
    ``<detector>.<setting>``; 404 naming ``asset_id``; audited (``detector_settings_changed``)."""
    state.repo.get_asset(asset_id)
    monitoring = monitoring_of(state)
    defaults = {"stale_device": monitoring.stale.settings}
    if monitoring.forecast_monitor is not None:
        defaults["forecast_drift"] = monitoring.forecast_monitor.drift
    if detector in defaults:  # the keys given completed by this process's defaults, as the detector will use them
        detector_settings.merged(detector, defaults[detector], body)
    else:
        detector_settings.check(detector, body)
    monitoring.store.put_detector_settings(asset_id, detector, body, at=datetime.now(UTC), by=_actor(request))
    record_change(request, AuditEvent.DETECTOR_SETTINGS_CHANGED, subject=asset_id, detector=detector, settings=body)
    return body
