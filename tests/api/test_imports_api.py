"""CSV import over HTTP: the CLI's mapping, every rejected row answered, conflicts, roles, errors by field,
interval-end labels on DST days, 422 when no row is accepted."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_import_fidelity import BERLIN_FALL_BACK_HOUR_ENDING, BERLIN_FALL_BACK_STARTS
from tests.local_days import end_labelled_csv

from .conftest import ClientAs

CSV = "ts,kwh\n2024-03-01T00:00:00Z,1.5\n2024-03-01T00:15:00Z,oops\n2024-03-01T00:30:00Z,2.0\n2024-03-01T00:45:00Z,65535\n"


def site_and_meter(client: TestClient) -> None:
    assert client.post("/api/v1/sites", json={"id": "imp", "name": "Imp", "timezone": "Europe/Berlin"}).status_code == 201
    assert client.post("/api/v1/assets", json={"id": "m-imp", "site_id": "imp", "name": "M", "kind": "meter"}).status_code == 201


def post(client: TestClient | ClientAs, text: str, **fields: str) -> object:
    form = {"asset": "m-imp", "timestamp_column": "ts", "value_column": "kwh", "unit": "kWh", "quantity": "energy",
            "interval_seconds": "900"} | fields
    return client.post("/api/v1/imports", data=form, files={"file": ("meter.csv", text.encode(), "text/csv")})


def test_an_upload_stores_good_rows_and_lists_every_rejected_one(client: TestClient) -> None:
    site_and_meter(client)
    answer = post(client, CSV)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["rows_read"], body["readings_stored"], body["rows_rejected"]) == (4, 2, 2)
    assert [(r["line"], r["field"]) for r in body["rejected"]] == [(3, "kwh"), (5, "kwh")]
    assert "sentinel" in body["rejected"][1]["reason"]
    stored = client.get("/api/v1/assets/m-imp/readings", params={"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}).json()
    assert [r["value"] for r in stored["readings"]] == [1.5, 2.0]
    # The same file again: duplicates, nothing new; another value for a stored key is a conflict.
    again = post(client, CSV.replace("1.5", "1.7")).json()
    assert again["readings_stored"] == 0 and again["duplicates"] == 1
    (conflict,) = again["conflicts"]
    assert (conflict["stored_value"], conflict["new_value"]) == (1.5, 1.7)


def test_semicolon_files_and_hour_ending_labels(client: TestClient) -> None:
    site_and_meter(client)
    text = "date;hour;kwh\n2024-03-01;1;1.0\n2024-03-01;2;2.0\n"
    body = post(client, text, timestamp_column="date", hour_column="hour", delimiter=";", interval_seconds="3600",
                site="imp").json()
    assert body["readings_stored"] == 2 and body["rows_rejected"] == 0
    stored = client.get("/api/v1/assets/m-imp/readings", params={"start": "2024-02-29T00:00:00Z", "end": "2024-03-02T00:00:00Z"}).json()
    assert stored["readings"][0]["ts"].startswith("2024-02-29T23:00:00")  # hour ending 1 in Berlin (UTC+1)


def test_bad_mappings_name_the_option_and_viewers_cannot_import(client: TestClient, viewer_client: ClientAs) -> None:
    site_and_meter(client)
    missing = client.post("/api/v1/imports", data={"asset": "m-imp"}, files={"file": ("m.csv", CSV.encode(), "text/csv")})
    assert missing.status_code == 422 and missing.json()["field"] == "value_column"
    assert post(client, CSV, timestamp_column="time").status_code == 422
    assert post(client, "").json()["field"] == "file"
    assert post(client, CSV, delimiter="ab").status_code == 422
    assert post(viewer_client, CSV).status_code == 403


def _iso(ts: object) -> str:
    return ts.isoformat().replace("+00:00", "Z")  # type: ignore[attr-defined]


def test_hour_ending_fall_back_day_keeps_25_hours_and_its_total(client: TestClient) -> None:
    site_and_meter(client)
    body = post(client, BERLIN_FALL_BACK_HOUR_ENDING, label="end", interval_seconds="3600", site="imp")
    assert body.status_code == 200, body.text
    answer = body.json()
    assert (answer["readings_stored"], answer["duplicates"], answer["rows_rejected"], answer["conflicts"]) == (25, 0, 0, [])
    day = {"start": "2025-10-25T22:00:00Z", "end": "2025-10-26T23:00:00Z"}
    daily = client.get("/api/v1/assets/m-imp/energy", params={**day, "bucket": "day"}).json()
    assert daily["total_energy_kwh"] == pytest.approx(337.5)
    assert [b["sample_count"] for b in daily["buckets"]] == [25]
    hourly = client.get("/api/v1/assets/m-imp/energy", params={**day, "bucket": "hour"}).json()["buckets"]
    assert [b["start"] for b in hourly] == [_iso(ts) for ts in BERLIN_FALL_BACK_STARTS]
    assert [b["energy_kwh"] for b in hourly] == pytest.approx([k + 1.5 for k in range(25)])  # no null hour


@pytest.mark.parametrize(("day", "count"), [(date(2025, 10, 26), 100), (date(2025, 3, 30), 92)])
def test_quarter_hour_ending_labels_of_dst_days(client: TestClient, day: date, count: int) -> None:
    site_and_meter(client)
    text, expected = end_labelled_csv("Europe/Berlin", day, 15)
    answer = post(client, text, label="end", site="imp").json()
    assert (answer["readings_stored"], answer["duplicates"], answer["rows_rejected"], answer["conflicts"]) == (count, 0, 0, [])
    span = {"start": _iso(min(expected)), "end": _iso(max(expected) + timedelta(minutes=15)), "limit": 1000}
    stored = client.get("/api/v1/assets/m-imp/readings", params=span).json()["readings"]
    assert {r["ts"]: r["value"] for r in stored} == {_iso(ts): value for ts, value in expected.items()}


def test_unknown_asset_or_site_is_one_answer_naming_the_field(client: TestClient) -> None:
    site_and_meter(client)
    unknown_asset = post(client, CSV, asset="nope")
    assert unknown_asset.status_code == 404 and unknown_asset.json()["field"] == "asset", unknown_asset.text
    unknown_site = post(client, CSV, site="nowhere")
    assert unknown_site.status_code == 404 and unknown_site.json()["field"] == "site", unknown_site.text


def test_nothing_accepted_is_422_with_every_rejected_row(client: TestClient) -> None:
    site_and_meter(client)
    text = "ts,kwh\n2024-03-01T00:00:00Z,n/a\n2024-03-01T00:15:00Z,\u0665\n2024-03-01 00:30,1\n"
    answer = post(client, text)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert (body["rows_read"], body["readings_stored"], body["rows_rejected"]) == (3, 0, 3)
    assert [(r["line"], r["field"]) for r in body["rejected"]] == [(2, "kwh"), (3, "kwh"), (4, "ts")]
    assert body["rejected"][1]["reason"] == "value '\u0665' is not a number"  # an Arabic-Indic five is not 5
    assert post(client, "ts,kwh\n").status_code == 200  # no rows: nothing was rejected either
    assert post(client, CSV).status_code == 200  # two of four rows accepted
    again = post(client, CSV)
    assert again.status_code == 200 and again.json()["duplicates"] == 2  # already stored: accepted, not rejected


def test_decimal_commas_by_option(client: TestClient) -> None:
    site_and_meter(client)
    text = "ts;kwh\n2024-03-01T00:00:00Z;1,5\n2024-03-01T00:15:00Z;0,25\n2024-03-01T00:30:00Z;1.5\n"
    body = post(client, text, delimiter=";", decimal=",").json()
    assert (body["readings_stored"], [(r["line"], r["field"]) for r in body["rejected"]]) == (2, [(4, "kwh")])
    stored = client.get("/api/v1/assets/m-imp/readings", params={"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}).json()
    assert [r["value"] for r in stored["readings"]] == [1.5, 0.25]
    assert post(client, text, delimiter=";", decimal=";").status_code == 422


def test_replacing_stored_readings_needs_an_admin_and_is_audited(client: TestClient, operator_client: ClientAs) -> None:
    """Replacing is rewriting history, like deleting: an operator may import but not replace."""
    site_and_meter(client)
    assert post(operator_client, CSV).status_code == 200  # operators import
    refused = post(operator_client, CSV.replace("1.5", "999"), on_conflict="replace")
    assert refused.status_code == 403 and refused.json()["field"] == "on_conflict"
    kept = client.get("/api/v1/assets/m-imp/readings", params={"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}).json()
    assert [r["value"] for r in kept["readings"]] == [1.5, 2.0]

    replaced = post(client, CSV.replace("1.5", "999"), on_conflict="replace").json()
    assert replaced["replaced"] is True and len(replaced["conflicts"]) == 1
    stored = client.get("/api/v1/assets/m-imp/readings", params={"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"}).json()
    assert [r["value"] for r in stored["readings"]] == [999.0, 2.0]
    [entry] = [e for e in client.get("/api/v1/audit").json() if e["event"] == "readings_replaced"]
    assert entry["subject"] == "m-imp" and entry["detail"]["replaced"] == 1
    assert entry["detail"]["start"].startswith("2024-03-01T00:00:00")
