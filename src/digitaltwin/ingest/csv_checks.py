"""Checking the rows of a CSV import and turning the accepted ones into readings, whole columns at
once: the steps :func:`~digitaltwin.ingest.csv_import.import_csv` takes after reading a file
(see that module for the rules), shared with the streamed import
(:mod:`digitaltwin.ingest.csv_stream`).

The checks come in two parts. :func:`row_checks` looks at each row on its own (asset present,
timestamp readable, value a plausible number): a row's outcome depends on its own text only, so
the checks of consecutive pieces of a file, joined, are those of the file (:func:`join_checks`),
provided each piece parsed its timestamps the same way (:func:`row_local`). :func:`place` then
places local times in time per asset in file order and rejects implausible instants and unknown
assets, which needs the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from digitaltwin.domain.units import quantity_spec
from digitaltwin.ingest.csv_columns import Columns, RowChecks, parse_values
from digitaltwin.ingest.csv_times import (
    fixed_width_applies,
    hour_starts,
    instant_labels,
    localize_ends,
    localize_starts,
    reject_implausible,
)
from digitaltwin.storage.repository import Repository

if TYPE_CHECKING:
    from digitaltwin.ingest.csv_import import ColumnMapping

_US_PER_S = 1_000_000


@dataclass(slots=True)
class Checked:
    """Rows being checked: their state and errors, each row's instant (int64 microseconds: UTC
    epoch, or wall-clock counted the same way where ``wall``), and each value column in
    canonical units (float64)."""

    rows: RowChecks
    us: np.ndarray
    wall: np.ndarray
    values: list[np.ndarray]

    def copy(self) -> Checked:
        """An independent copy (:func:`place` changes ``rows`` and ``us`` in place)."""
        rows = RowChecks(self.rows.lines)
        rows.ok, rows.errors = self.rows.ok.copy(), list(self.rows.errors)
        return Checked(rows, self.us.copy(), self.wall.copy(), self.values)


def row_checks(cols: Columns, mapping: ColumnMapping, tz_name: str | None) -> Checked:
    """The checks of each row on its own: asset present, timestamp readable (not yet placed in
    time unless it has a UTC offset), values plain finite numbers within the plausible range."""
    rows = RowChecks(cols.lines)
    for i in cols.wide:
        rows.reject(i, "row", f"more fields than the header's {cols.header_fields}: a value holding the delimiter "
                    "must be quoted (decimal commas: --decimal , with another --delimiter)")
    if not all(cols.assets):
        for i, asset_id in enumerate(cols.assets):
            if not asset_id:
                rows.reject(i, mapping.asset_column or "asset_id", "asset id is missing")
    if mapping.hour_column:
        us, wall = hour_starts(cols, mapping, tz_name, rows)
    else:
        us, wall = instant_labels(cols, mapping, rows)
    values = [parse_values(texts, col, rows, decimal=mapping.decimal) for texts, col in zip(cols.values, mapping.values, strict=True)]
    return Checked(rows, us, wall, values)


def place(repo: Repository, cols: Columns, mapping: ColumnMapping, tz_name: str | None, interval: int | None, checked: Checked) -> None:
    """The checks that look at the whole file, in place: local times placed in time per asset in
    file order (interval ends moved to starts), implausible instants and unknown assets rejected.
    ``interval``: seconds, needed for ``label="end"``."""
    rows, us, wall = checked.rows, checked.us, checked.wall
    column = mapping.timestamp_column
    if mapping.label == "end" and not mapping.hour_column:
        localize_ends(us, wall, cols, tz_name, column, rows, interval * _US_PER_S)  # type: ignore[operator]
    else:
        localize_starts(us, wall, cols, tz_name, mapping.hour_column or column, rows)
    reject_implausible(us, mapping.hour_column or column, rows)
    named = {a for a in set(cols.assets) if a}
    # One asset for every row was found before reading (get_asset); an asset column's are looked up here.
    known = named if cols.one_asset else repo.known_asset_ids(named)
    if named - known:
        for i, asset_id in enumerate(cols.assets):
            if rows.ok[i] and asset_id not in known:
                rows.reject(i, mapping.asset_column or "asset_id", f"unknown asset {asset_id!r}")


def check_rows(repo: Repository, cols: Columns, mapping: ColumnMapping, tz_name: str | None, interval: int | None) -> Checked:
    """Every check of every row of a file: :func:`row_checks`, then :func:`place`."""
    checked = row_checks(cols, mapping, tz_name)
    place(repo, cols, mapping, tz_name, interval, checked)
    return checked


def row_local(cols: Columns, mapping: ColumnMapping) -> bool:
    """Whether :func:`row_checks` of any piece of ``cols`` gives the same outcome for each of its
    rows as for the whole: no hour column (hours are numbered per day) and timestamps read one by
    one (ISO 8601) or all by the fixed-width reader (else the whole column goes to pandas' parser,
    and a piece all of fixed width would not). Value columns must be numbers already (the fast
    reader's), whose checks are each row's own."""
    if mapping.hour_column or not all(isinstance(v, np.ndarray) for v in cols.values):
        return False
    return mapping.timestamp_format is None or fixed_width_applies(cols.stamps, mapping.timestamp_format)


def join_checks(cols: Columns, pieces: list[Checked]) -> Checked:
    """The :func:`row_checks` of consecutive pieces as those of the joined file ``cols`` (valid when
    :func:`row_local` holds for it)."""
    rows = RowChecks(cols.lines)
    rows.ok = np.concatenate([p.rows.ok for p in pieces])
    rows.errors = [e for p in pieces for e in p.rows.errors]
    values = [np.concatenate([p.values[c] for p in pieces]) for c in range(len(pieces[0].values))]
    return Checked(rows, np.concatenate([p.us for p in pieces]), np.concatenate([p.wall for p in pieces]), values)


def readings_of(
    repo: Repository, cols: Columns, mapping: ColumnMapping, checked: Checked, interval: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The readings of the accepted rows, value column after value column: (series ids, epoch
    microseconds, values, row of each reading, value column of each reading); their series are
    created here (``interval`` seconds recorded on interval series). None without value columns."""
    keep = np.flatnonzero(checked.rows.ok)
    assets = np.asarray(cols.assets, dtype=object)[keep] if not cols.one_asset else None
    kept_assets = ([mapping.asset_id] if len(keep) else []) if assets is None else list(dict.fromkeys(assets.tolist()))
    parts_sid, parts_ts, parts_value, parts_row, parts_col = [], [], [], [], []
    for c, col in enumerate(mapping.values):
        kind_interval = quantity_spec(col.quantity).kind.value == "interval"
        sid_of = {
            a: repo.ensure_series(a, col.quantity, interval_seconds=interval if kind_interval else None).id
            for a in kept_assets
        }
        if len(sid_of) <= 1:  # one series (or no row kept)
            parts_sid.append(np.full(len(keep), next(iter(sid_of.values()), 0), dtype=np.int64))
        else:
            parts_sid.append(pd.Series(assets).map(sid_of).to_numpy(np.int64))
        parts_ts.append(checked.us[keep])
        parts_value.append(checked.values[c][keep])
        parts_row.append(keep)
        parts_col.append(np.full(len(keep), c))
    if not parts_sid:
        return None
    return (np.concatenate(parts_sid), np.concatenate(parts_ts), np.concatenate(parts_value),
            np.concatenate(parts_row), np.concatenate(parts_col))
