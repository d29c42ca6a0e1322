"""CSV import over HTTP: the command line's ``digitaltwin import`` with the same column mapping."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from digitaltwin.api.deps import State
from digitaltwin.domain.errors import ValidationError
from digitaltwin.ingest.csv_import import build_mapping, import_csv
from digitaltwin.observability.changes import record_change
from digitaltwin.security.audit import AuditEvent
from digitaltwin.security.errors import PermissionDeniedError
from digitaltwin.security.roles import Role

router = APIRouter(prefix="/api/v1", tags=["readings"])

#: Every rejected row is answered, up to this many (a larger file's rest is counted in ``rows_rejected``).
MAX_LISTED = 100_000


class RejectedRowOut(BaseModel):
    line: int = Field(description="1-based line of the file")
    field: str
    reason: str


class ConflictOut(BaseModel):
    line: int
    asset_id: str
    quantity: str
    ts: datetime
    stored_value: float
    new_value: float


class ImportOut(BaseModel):
    """What one import did; every rejected row and conflict is listed (see ``rows_rejected``)."""

    rows_read: int
    readings_parsed: int
    readings_stored: int
    duplicates: int = Field(description="readings already stored with the same value")
    rows_rejected: int
    rejected_by_field: dict[str, int]
    replaced: bool = Field(description="conflicts replaced the stored value (on_conflict=replace)")
    rejected: list[RejectedRowOut]
    conflicts: list[ConflictOut]


@router.post(
    "/imports",
    response_model=ImportOut,
    responses={422: {"model": ImportOut, "description": "every row was rejected (or the mapping or a form field is unusable)"}},
)
async def import_file(
    state: State,
    request: Request,
    file: Annotated[UploadFile, File(description="the CSV file (at most MAX_REQUEST_BODY_BYTES)")],
    preset: Annotated[str | None, Form()] = None,
    asset: Annotated[str | None, Form(description="asset of every row (or the preset's)")] = None,
    asset_column: Annotated[str | None, Form()] = None,
    timestamp_column: Annotated[str, Form()] = "ts",
    value_column: Annotated[str | None, Form()] = None,
    quantity: Annotated[str, Form()] = "energy",
    unit: Annotated[str | None, Form()] = None,
    timezone: Annotated[str | None, Form(description="IANA zone of timestamps without offset")] = None,
    site: Annotated[str | None, Form(description="use this site's timezone for timestamps without offset")] = None,
    label: Annotated[Literal["start", "end"], Form()] = "start",
    interval_seconds: Annotated[int | None, Form(gt=0)] = None,
    timestamp_format: Annotated[str | None, Form()] = None,
    delimiter: Annotated[str, Form(min_length=1, max_length=1)] = ",",
    decimal: Annotated[Literal[".", ","], Form(description="decimal separator of the values (1,5 with ',')")] = ".",
    hour_column: Annotated[str | None, Form()] = None,
    hour_convention: Annotated[Literal["ending", "beginning"], Form()] = "ending",
    on_conflict: Annotated[Literal["keep", "replace"], Form()] = "keep",
) -> JSONResponse:
    """Import a CSV file of readings (operator), mapped as ``digitaltwin import`` maps it.

    Rows that cannot be read are rejected one by one naming their field, the others are stored;
    a reading stored before with another value is a conflict (kept unless ``on_conflict=replace``).
    The answer is 200 when at least one row was accepted, 422 with the same body (every rejected
    row listed) when the file has rows and none was, as ``POST /readings`` answers a batch.
    Before any row is read: 404 naming ``asset`` or ``site`` when that asset or site does not
    exist, 422 naming the option for a mapping that does not fit the file.

    ``on_conflict=replace`` rewrites stored readings, like deleting them: it needs an admin (403
    naming ``on_conflict`` otherwise) and each import that replaced readings is written to the
    audit log (``readings_replaced``, with the count and the time range replaced).
    """
    if on_conflict == "replace":
        principal = getattr(request.state, "principal", None)
        if principal is not None and (principal.role is None or not principal.role.allows(Role.ADMIN)):
            raise PermissionDeniedError("on_conflict=replace rewrites stored readings: it needs the admin role",
                                        field="on_conflict")
    mapping = build_mapping(
        preset=preset, asset=asset, asset_column=asset_column, timestamp_column=timestamp_column,
        value_column=value_column, quantity=quantity, unit=unit, timezone=timezone, label=label,
        interval_seconds=interval_seconds, timestamp_format=timestamp_format, delimiter=delimiter,
        hour_column=hour_column, hour_convention=hour_convention, decimal=decimal,
    )
    site_tz = state.repo.get_site(site, field="site").timezone if site else None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.csv"
        data = await file.read()
        if not data.strip():
            raise ValidationError("the file is empty", field="file")
        path.write_bytes(data)
        report = await run_in_threadpool(
            import_csv, state.repo, path, mapping, site_timezone=site_tz, replace_conflicts=on_conflict == "replace"
        )
    if report.replaced and report.conflicts:
        record_change(
            request, AuditEvent.READINGS_REPLACED, subject=",".join(sorted({c.asset_id for c in report.conflicts}))[:200],
            replaced=len(report.conflicts), start=min(c.ts for c in report.conflicts).isoformat(),
            end=max(c.ts for c in report.conflicts).isoformat(), file=file.filename,
        )
    out = ImportOut(
        rows_read=report.rows_read, readings_parsed=report.readings_parsed, readings_stored=report.readings_stored,
        duplicates=report.duplicates, rows_rejected=len(report.errors), rejected_by_field=report.rejected_by_field,
        replaced=report.replaced,
        rejected=[RejectedRowOut(line=e.line, field=e.field, reason=e.reason) for e in report.errors[:MAX_LISTED]],
        conflicts=[ConflictOut(line=c.line, asset_id=c.asset_id, quantity=c.quantity, ts=c.ts, stored_value=c.stored_value,
                               new_value=c.new_value) for c in report.conflicts[:MAX_LISTED]],
    )
    code = 422 if report.rows_read and len(report.errors) == report.rows_read else 200
    return JSONResponse(out.model_dump(mode="json"), status_code=code)
