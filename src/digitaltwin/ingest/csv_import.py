"""CSV import with a column mapping, and the built-in presets.

Rows that cannot be parsed are reported with their line number, field and
reason; all other rows are stored. Re-importing a file stores nothing new
(readings are keyed by series and timestamp).

Timestamps: values with a UTC offset are taken as they are; offset-less values
take the mapping's timezone, else the site's; with neither the row is
rejected ("no UTC offset", field case ``time/naive-timestamps``). Repeated
local hours are resolved by each asset's file order
(``time/csv-ambiguous-local-times``).
Interval-end labels are moved to interval starts, the product's convention.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.readings import Reading, parse_value
from digitaltwin.domain.sentinels import check_sentinel
from digitaltwin.domain.timestamps import check_plausible, localize_sequence, parse_instant, zone
from digitaltwin.domain.units import quantity_spec, to_canonical
from digitaltwin.storage.repository import Repository

#: Readings written per transaction.
CHUNK_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class ValueColumn:
    """A CSV column holding values of one quantity, in ``unit`` (None: canonical)."""

    column: str
    quantity: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """How to read a CSV file into readings.

    Attributes:
        timestamp_column: column with the timestamps.
        values: the value columns.
        asset_column: column naming the asset of each row; else ``asset_id`` for all rows.
        timezone: IANA zone of offset-less timestamps (None: the site's zone).
        label: whether timestamps label interval starts or ends.
        interval_seconds: interval length of interval quantities (needed for ``label="end"``).
        timestamp_format: ``strptime`` format; None for ISO 8601.
        midnight_ends_day: a ``00:00`` label closes its own date (it is 24:00), as in the steel dataset.
    """

    timestamp_column: str
    values: tuple[ValueColumn, ...]
    asset_column: str | None = None
    asset_id: str | None = None
    timezone: str | None = None
    label: Literal["start", "end"] = "start"
    interval_seconds: int | None = None
    timestamp_format: str | None = None
    midnight_ends_day: bool = False
    delimiter: str = ","
    encoding: str = "utf-8-sig"


#: UCI "Steel Industry Energy Consumption" (DAEWOO Steel, 2018): see digitaltwin/demo_data/steel_industry/.
STEEL_PRESET = ColumnMapping(
    timestamp_column="date",
    values=(ValueColumn("Usage_kWh", "energy", "kWh"),),
    asset_id="steel-plant",
    timezone="Asia/Seoul",
    label="end",
    interval_seconds=900,
    timestamp_format="%d/%m/%Y %H:%M",
    midnight_ends_day=True,
)

PRESETS: dict[str, ColumnMapping] = {"steel": STEEL_PRESET}


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: its 1-based line number in the file, the field to blame and why."""

    line: int
    field: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    """Outcome of one import."""

    rows_read: int = 0
    readings_parsed: int = 0
    readings_stored: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Parsed readings that were already stored."""
        return self.readings_parsed - self.readings_stored


@dataclass(slots=True)
class _Row:
    line: int
    asset_id: str
    ts: datetime | None  # aware when the text had an offset, else naive local
    values: list[tuple[str, float]]


def _parse_ts(text: str, mapping: ColumnMapping) -> datetime:
    column = mapping.timestamp_column
    if mapping.timestamp_format is None:
        return parse_instant(text, field=column, tz=None) if _has_offset(text) else _naive_iso(text, column)
    try:
        parsed = datetime.strptime(text.strip(), mapping.timestamp_format)
    except ValueError:
        raise ValidationError(f"timestamp {text!r} does not match {mapping.timestamp_format!r}", field=column) from None
    if mapping.midnight_ends_day and parsed.hour == 0 and parsed.minute == 0:
        parsed += timedelta(days=1)
    return parsed


def _has_offset(text: str) -> bool:
    text = text.strip()
    return text.endswith(("Z", "z")) or (len(text) > 10 and ("+" in text[10:] or "-" in text[10:]))


def _naive_iso(text: str, column: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"unparseable timestamp {text!r}", field=column) from None


def _parse_formatted(texts: list[str], mapping: ColumnMapping) -> list[datetime | ValidationError]:
    """Vectorised ``strptime`` of a whole column; failures are re-parsed one by one for their message."""
    parsed = pd.to_datetime(pd.Series(texts, dtype="object").str.strip(), format=mapping.timestamp_format, errors="coerce")
    if mapping.midnight_ends_day:
        midnight = (parsed.dt.hour == 0) & (parsed.dt.minute == 0)
        parsed = parsed.where(~midnight, parsed + pd.Timedelta(days=1))
    values = parsed.dt.to_pydatetime()
    out: list[datetime | ValidationError] = []
    for text, value in zip(texts, values, strict=True):
        if value is None or value != value:  # NaT
            try:
                out.append(_parse_ts(text, mapping))
            except ValidationError as exc:
                out.append(exc)
        else:
            out.append(value)
    return out


def read_rows(path: Path, mapping: ColumnMapping) -> tuple[list[_Row], list[RowError], int]:
    """Parse a CSV file into rows with raw timestamps; returns (rows, errors, rows read)."""
    rows: list[_Row] = []
    errors: list[RowError] = []
    texts: list[str] = []
    count = 0
    with path.open(newline="", encoding=mapping.encoding) as handle:
        reader = csv.DictReader(handle, delimiter=mapping.delimiter)
        header = reader.fieldnames or []
        needed = [mapping.timestamp_column, *(v.column for v in mapping.values)]
        if mapping.asset_column:
            needed.append(mapping.asset_column)
        missing = [c for c in needed if c not in header]
        if missing:
            raise ValidationError(f"column(s) {', '.join(missing)} not in the header ({', '.join(header)})", field="mapping")
        for record in reader:
            count += 1
            line = reader.line_num
            try:
                asset_id = record[mapping.asset_column] if mapping.asset_column else mapping.asset_id
                if not asset_id:
                    raise ValidationError("asset id is missing", field=mapping.asset_column or "asset_id")
                text = record[mapping.timestamp_column] or ""
                ts = None if mapping.timestamp_format else _parse_ts(text, mapping)
                values = []
                for col in mapping.values:
                    raw = check_sentinel(col.quantity, parse_value(record[col.column], field=col.column), field=col.column)
                    values.append((col.quantity, to_canonical(col.quantity, raw, col.unit, field=col.column)))
            except ValidationError as exc:
                errors.append(RowError(line, exc.field or "row", exc.message))
                continue
            rows.append(_Row(line, asset_id, ts, values))
            texts.append(text)
    if mapping.timestamp_format and rows:
        kept: list[_Row] = []
        for row, parsed in zip(rows, _parse_formatted(texts, mapping), strict=True):
            if isinstance(parsed, ValidationError):
                errors.append(RowError(row.line, parsed.field or mapping.timestamp_column, parsed.message))
            else:
                row.ts = parsed
                kept.append(row)
        rows = kept
    return rows, errors, count


def _resolve_times(rows: list[_Row], tz_name: str | None, column: str, errors: list[RowError]) -> None:
    """Make every row's timestamp UTC in place; rows that cannot be resolved get ts=None and an error."""
    naive_idx = [i for i, r in enumerate(rows) if r.ts is not None and r.ts.tzinfo is None]
    if naive_idx and tz_name is None:
        for i in naive_idx:
            errors.append(RowError(rows[i].line, column, "timestamp has no UTC offset and no timezone is configured"))
            rows[i].ts = None
        naive_idx = []
    if naive_idx:
        tz = zone(tz_name)  # type: ignore[arg-type]
        # File order resolves the repeated hour per asset: in a file that interleaves
        # meters, one meter's rows are not a step back in another meter's time.
        per_asset: dict[str, list[int]] = {}
        for i in naive_idx:
            per_asset.setdefault(rows[i].asset_id, []).append(i)
        for idx in per_asset.values():
            resolved = localize_sequence([rows[i].ts for i in idx], tz)
            for i, value in zip(idx, resolved, strict=True):
                if isinstance(value, datetime):
                    rows[i].ts = value
                else:
                    errors.append(RowError(rows[i].line, column, str(value)))
                    rows[i].ts = None
    for row in rows:
        if row.ts is not None:
            try:
                row.ts = check_plausible(row.ts.astimezone(UTC), field=column)
            except ValidationError as exc:
                errors.append(RowError(row.line, column, exc.message))
                row.ts = None


def import_csv(
    repo: Repository,
    path: Path,
    mapping: ColumnMapping,
    *,
    site_timezone: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a CSV file into stored readings.

    Args:
        repo: storage.
        path: the CSV file.
        mapping: how to read it (see :data:`PRESETS`).
        site_timezone: zone for offset-less timestamps when the mapping names none.
        progress: called with (rows written so far, rows to write) after each chunk.

    Returns:
        Counts and the rejected rows. Rows of unknown assets are rejected naming
        the asset column.

    Raises:
        ValidationError: the mapping does not fit the file's header.
    """
    for col in mapping.values:
        quantity_spec(col.quantity, field=col.column)
    if mapping.label == "end" and not mapping.interval_seconds:
        raise ValidationError("interval-end labels need interval_seconds", field="interval_seconds")
    if mapping.interval_seconds is not None and mapping.interval_seconds <= 0:
        raise ValidationError("interval_seconds must be positive", field="interval_seconds")
    try:
        rows, errors, count = read_rows(path, mapping)
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path.name} is not {mapping.encoding} text (byte {exc.start}); is it a CSV file?", field="file"
        ) from None
    except csv.Error as exc:
        raise ValidationError(f"{path.name} is not a readable CSV file: {exc}", field="file") from None
    tz_name = mapping.timezone or site_timezone
    _resolve_times(rows, tz_name, mapping.timestamp_column, errors)
    known = repo.known_asset_ids({r.asset_id for r in rows})
    shift = timedelta(seconds=mapping.interval_seconds or 0) if mapping.label == "end" else timedelta(0)
    readings: list[Reading] = []
    for row in rows:
        if row.ts is None:
            continue
        if row.asset_id not in known:
            errors.append(RowError(row.line, mapping.asset_column or "asset_id", f"unknown asset {row.asset_id!r}"))
            continue
        start = row.ts - shift
        readings.extend(Reading(row.asset_id, q, start, v) for q, v in row.values)
    report = ImportReport(rows_read=count, readings_parsed=len(readings), errors=sorted(errors, key=lambda e: e.line))
    for offset in range(0, len(readings), CHUNK_ROWS):
        chunk = readings[offset : offset + CHUNK_ROWS]
        report.readings_stored += repo.write_readings(chunk, interval_seconds=mapping.interval_seconds)
        if progress is not None:
            progress(offset + len(chunk), len(readings))
    return report


def with_asset(mapping: ColumnMapping, asset_id: str) -> ColumnMapping:
    """A copy of ``mapping`` that files every row under ``asset_id``."""
    return replace(mapping, asset_id=asset_id, asset_column=None)
