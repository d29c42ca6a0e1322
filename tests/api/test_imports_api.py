"""CSV import over HTTP: the CLI's mapping, every rejected row answered, conflicts, roles, errors by field."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
