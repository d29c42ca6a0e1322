"""CSV import with a column mapping, and the built-in presets.

Every row is validated (timestamp, asset, each value: a plain finite decimal in a known unit
within the quantity's plausible range); rejected rows are reported with their line number,
field and reason (all of them: :meth:`ImportReport.write_rejections`), all other rows are
stored. Readings are keyed by series and timestamp: re-importing a file stores nothing new
(*duplicates*); a key already stored (or earlier in the file) with a *different* value is a
*conflict*, reported with both values. First write wins unless the import replaces.

Timestamps: values with a UTC offset are taken as they are; offset-less values
take the mapping's timezone, else the site's; with neither the row is
rejected ("no UTC offset", field case ``time/naive-timestamps``).

Local labels are placed in time so that the fall-back day's repeated hour and the
spring-forward gap resolve on the interval each row measures (docs/ingestion.md, "Interval-end
labels"):

* ``label="end"``: the end label is placed in time (a label shown twice on the fall-back day,
  Berlin's 02:00, by file order), then ``interval_seconds`` is subtracted in elapsed time; the
  gap's first wall-clock time (02:00 on the spring-forward day) is the instant of the change.
  Files that label an interval with its start's wall-clock time plus the interval (New York's
  "hour ending 02:00" twice) are read that way when reading their labels as ends leaves rows of
  an asset unplaced or on one instant and this does not
  (:func:`~digitaltwin.ingest.csv_times.localize_ends`). Whole-day intervals are local days.
* ``24:00`` ends its date (ISO 8601), in ISO timestamps and with ``timestamp_format``.
* a separate hour column (``hour_column``) of hour numbers, "hour ending" 1-24 or "hour
  beginning" 0-23 of the date in ``timestamp_column``. A fall-back day is numbered either
  with a repeated hour number (resolved by file order) or up to 25 (24 beginning); a date
  numbered that way, or a 23-hour day numbered 1-23 without its skipped hour, counts hours
  from the local midnight instead of reading them as wall-clock labels.
* Repeated local times are resolved per asset by file order: the first of two equal labels
  is the summer hour, the second the winter one, wherever they stand in the file
  (``time/csv-ambiguous-local-times``, :func:`~digitaltwin.domain.timestamps.localize_walls`).

Interval-end labels are moved to interval starts, the product's convention. The work is done
on whole columns (pandas and numpy, :mod:`digitaltwin.ingest.csv_checks`) and stored with
:meth:`~digitaltwin.storage.repository.Repository.store_arrays` (binary ``COPY`` on PostgreSQL).
On PostgreSQL a file of one value column of the mapping's asset that fits one batch is streamed
(:mod:`digitaltwin.ingest.csv_stream`): read and checked in pieces while the server inserts the
previous ones, committed only when the whole file's check gives the same rows, else imported
as above; the outcome is the same.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from digitaltwin.domain.errors import ValidationError
from digitaltwin.domain.units import quantity_spec
from digitaltwin.ingest.csv_checks import check_rows, readings_of
from digitaltwin.ingest.csv_columns import RowError, read_columns
from digitaltwin.ingest.csv_stream import import_streamed, streams
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import from_epoch_us

__all__ = ["CHUNK_ROWS", "PRESETS", "STEEL_PRESET", "ColumnMapping", "ImportConflict", "ImportReport", "RowError", "ValueColumn",
           "import_csv", "read_columns", "with_asset"]

#: Rows stored per transaction; progress is reported after each.
CHUNK_ROWS = 50_000



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
        timestamp_column: column with the timestamps (the dates, with ``hour_column``).
        values: the value columns.
        asset_column: column naming the asset of each row; else ``asset_id`` for all rows.
        timezone: IANA zone of offset-less timestamps (None: the site's zone).
        label: whether timestamps label interval starts or ends.
        interval_seconds: interval length of interval quantities (needed for ``label="end"``;
            one hour by default with ``hour_column``).
        timestamp_format: ``strptime`` format (of the dates with ``hour_column``); None for ISO 8601.
        midnight_ends_day: a ``00:00`` label closes its own date (it is 24:00), as in the steel dataset.
        hour_column: column of hour numbers of the date in ``timestamp_column`` (see the module docstring).
        hour_convention: ``ending`` (hour 1 is 00:00-01:00) or ``beginning`` (hour 0 is 00:00-01:00).
        delimiter: the field separator, e.g. ``;`` for exports of spreadsheet programs in many locales.
        decimal: the values' decimal separator, ``.`` or ``,`` (``1,5``; a point is then refused).
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
    hour_column: str | None = None
    hour_convention: Literal["ending", "beginning"] = "ending"
    decimal: Literal[".", ","] = "."


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
class ImportConflict:
    """A reading whose key (asset, quantity, ts) was already stored, or earlier in the file, with
    another value: ``stored_value`` stayed (or was replaced by ``new_value`` when replacing)."""

    line: int
    asset_id: str
    quantity: str
    ts: datetime
    stored_value: float
    new_value: float


@dataclass(slots=True)
class ImportReport:
    """Outcome of one import.

    Attributes:
        rows_read: data rows of the file (blank lines not counted).
        readings_parsed: readings of the accepted rows.
        readings_stored: readings newly stored.
        duplicates: readings whose key was stored with the same value (nothing to do).
        conflicts: readings whose key was stored with another value.
        replaced: whether conflicts replaced the stored value (else the stored value stayed).
        errors: every rejected row, by line.
    """

    rows_read: int = 0
    readings_parsed: int = 0
    readings_stored: int = 0
    duplicates: int = 0
    conflicts: list[ImportConflict] = field(default_factory=list)
    replaced: bool = False
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected_by_field(self) -> dict[str, int]:
        """Rejected rows per field to blame, most frequent first."""
        return dict(Counter(e.field for e in self.errors).most_common())

    def write_rejections(self, path: Path) -> int:
        """Write every rejected row and every conflict to a CSV file; returns the lines written.

        Columns: ``line`` (of the imported file), ``kind`` (``rejected`` or ``conflict``),
        ``field`` and ``reason``; a conflict's reason names the series, the instant and both values.
        """
        entries: list[tuple[int, str, str, str]] = [(e.line, "rejected", e.field, e.reason) for e in self.errors]
        for c in self.conflicts:
            outcome = "replaced" if self.replaced else "kept"
            entries.append((
                c.line, "conflict", c.quantity,
                f"{c.quantity} of {c.asset_id} at {c.ts.isoformat().replace('+00:00', 'Z')} is stored as {c.stored_value!r}, "
                f"the file has {c.new_value!r}; the stored value was {outcome}",
            ))
        entries.sort(key=lambda e: (e[0], e[1]))
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "kind", "field", "reason"])
            writer.writerows(entries)
        return len(entries)


def import_csv(
    repo: Repository,
    path: Path,
    mapping: ColumnMapping,
    *,
    site_timezone: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    replace_conflicts: bool = False,
) -> ImportReport:
    """Import a CSV file into stored readings.

    Args:
        repo: storage.
        path: the CSV file.
        mapping: how to read it (see :data:`PRESETS`).
        site_timezone: zone for offset-less timestamps when the mapping names none.
        progress: called with (readings written so far, readings to write) after each chunk.
        replace_conflicts: a reading stored with another value takes the file's value
            (default: the stored value stays; either way the conflict is reported).

    Returns:
        Counts, the conflicts and every rejected row. Rows of unknown assets in the asset
        column are rejected naming the column.

    Raises:
        ValidationError: the mapping does not fit the file's header, or names an unknown
            quantity, a bad delimiter, decimal separator or interval (an unknown unit
            rejects every row).
        NotFoundError: naming ``asset`` when the mapping's asset of every row does not
            exist (checked before any row is read).
    """
    for col in mapping.values:
        quantity_spec(col.quantity, field=col.column)
    if not isinstance(mapping.delimiter, str) or len(mapping.delimiter) != 1 or mapping.delimiter in "\r\n\"":
        raise ValidationError(f"delimiter must be one character (not a quote or line break), not {mapping.delimiter!r}", field="delimiter")
    if mapping.decimal not in (".", ","):
        raise ValidationError(f"decimal must be '.' or ',', not {mapping.decimal!r}", field="decimal")
    if mapping.asset_column is None and mapping.asset_id:
        repo.get_asset(mapping.asset_id, field="asset")  # one answer, not one rejected row per line
    interval = mapping.interval_seconds or (3600 if mapping.hour_column else None)
    if mapping.label == "end" and not interval:
        raise ValidationError("interval-end labels need interval_seconds", field="interval_seconds")
    if interval is not None and interval <= 0:
        raise ValidationError("interval_seconds must be positive", field="interval_seconds")
    tz_name = mapping.timezone or site_timezone
    if streams(repo, mapping, replace_conflicts=replace_conflicts):
        streamed = import_streamed(repo, path, mapping, tz_name=tz_name, interval=interval, max_readings=CHUNK_ROWS)
        if streamed is not None:
            cols, checked, stored = streamed
            report = ImportReport(rows_read=len(cols.lines), errors=sorted(checked.rows.errors, key=lambda e: e.line))
            report.readings_parsed = report.readings_stored = stored
            if progress is not None:
                progress(stored, stored)
            return report
    try:
        cols = read_columns(path, mapping)
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path.name} is not {mapping.encoding} text (byte {exc.start}); is it a CSV file?", field="file"
        ) from None
    except csv.Error as exc:
        raise ValidationError(f"{path.name} is not a readable CSV file: {exc}", field="file") from None
    checked = check_rows(repo, cols, mapping, tz_name, interval)
    report = ImportReport(rows_read=len(cols.lines), replaced=replace_conflicts, errors=sorted(checked.rows.errors, key=lambda e: e.line))
    found = readings_of(repo, cols, mapping, checked, interval)
    if found is None:
        return report
    sids, ts_us, vals, row_of, col_of = found
    report.readings_parsed = len(sids)
    total = len(sids)
    for offset in range(0, total, CHUNK_ROWS):
        chunk = slice(offset, offset + CHUNK_ROWS)
        outcome = repo.store_arrays(sids[chunk], ts_us[chunk], vals[chunk], replace=replace_conflicts)
        report.readings_stored += outcome.stored
        report.duplicates += outcome.duplicates
        for conflict in outcome.conflicts:
            j = offset + conflict.position
            i = int(row_of[j])
            report.conflicts.append(ImportConflict(
                cols.lines[i], str(cols.assets[i]), mapping.values[int(col_of[j])].quantity,
                from_epoch_us(int(ts_us[j])), conflict.stored_value, conflict.new_value,
            ))
        if progress is not None:
            progress(min(offset + CHUNK_ROWS, total), total)
    return report


def with_asset(mapping: ColumnMapping, asset_id: str) -> ColumnMapping:
    """A copy of ``mapping`` that files every row under ``asset_id``."""
    return replace(mapping, asset_id=asset_id, asset_column=None)


def build_mapping(
    *,
    preset: str | None = None,
    asset: str | None = None,
    asset_column: str | None = None,
    timestamp_column: str = "ts",
    value_column: str | None = None,
    quantity: str = "energy",
    unit: str | None = None,
    timezone: str | None = None,
    label: str = "start",
    interval_seconds: int | None = None,
    timestamp_format: str | None = None,
    delimiter: str = ",",
    hour_column: str | None = None,
    hour_convention: str = "ending",
    decimal: str = ".",
) -> ColumnMapping:
    """The mapping the command line's and the HTTP import's options describe (a preset, or columns).

    Raises:
        ValidationError: naming the option (``preset``, ``value_column``, ``label``, ``hour_convention``,
            ``decimal``).
    """
    if hour_convention not in ("ending", "beginning"):
        raise ValidationError("must be ending or beginning", field="hour_convention")
    if decimal not in (".", ","):
        raise ValidationError(f"decimal must be '.' or ',', not {decimal!r}", field="decimal")
    if preset:
        if preset not in PRESETS:
            raise ValidationError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}", field="preset")
        mapping = with_asset(PRESETS[preset], asset) if asset else PRESETS[preset]
    else:
        if not value_column:
            raise ValidationError("is required without a preset", field="value_column")
        if label not in ("start", "end"):
            raise ValidationError("must be start or end", field="label")
        mapping = ColumnMapping(
            timestamp_column=timestamp_column,
            values=(ValueColumn(value_column, quantity, unit),),
            asset_column=asset_column,
            asset_id=asset,
            timezone=timezone,
            label=label,  # type: ignore[arg-type]
            interval_seconds=interval_seconds,
            timestamp_format=timestamp_format,
            hour_column=hour_column,
            hour_convention=hour_convention,  # type: ignore[arg-type]
        )
    if delimiter != ",":
        mapping = replace(mapping, delimiter=delimiter)
    return replace(mapping, decimal=decimal) if decimal != "." else mapping  # type: ignore[arg-type]
