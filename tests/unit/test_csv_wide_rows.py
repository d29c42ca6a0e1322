"""A CSV row with more fields than the header is rejected (a value holding the delimiter, such as
an unquoted decimal comma, would otherwise lose what follows it), on both of the file readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitaltwin.ingest.csv_checks import row_checks
from digitaltwin.ingest.csv_columns import read_columns
from digitaltwin.ingest.csv_import import ColumnMapping, ValueColumn


def _mapping() -> ColumnMapping:
    return ColumnMapping(timestamp_column="ts", values=(ValueColumn("kwh", "energy", "kWh"),), asset_id="m")


@pytest.mark.parametrize("quoted", [False, True])  # quotes send the file to the csv module's reader
def test_a_row_with_more_fields_than_the_header_is_rejected(tmp_path: Path, quoted: bool) -> None:
    stamp = '"2024-08-01T00:15:00Z"' if quoted else "2024-08-01T00:15:00Z"
    lines = ["ts,kwh", "2024-08-01T00:00:00Z,1,5", f"{stamp},2", "2024-08-01T00:30:00Z,3,", "2024-08-01T00:45:00Z,4,x,y"]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    cols = read_columns(path, _mapping())
    checked = row_checks(cols, _mapping(), None)
    assert checked.rows.ok.tolist() == [False, True, True, False]  # an empty trailing field is harmless
    assert [(e.line, e.field) for e in checked.rows.errors] == [(2, "row"), (5, "row")]
    assert "more fields than the header's 2" in checked.rows.errors[0].reason
