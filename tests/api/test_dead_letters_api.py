"""GET /api/v1/dead-letters: what MQTT rejected and why, for operators (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from digitaltwin.domain.dead_letters import DeadLetter
from digitaltwin.storage.repository import Repository
from tests.api.conftest import ClientAs

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _letters(repo: Repository) -> None:
    repo.write_dead_letters(
        [
            DeadLetter("dt/plant/m1/telemetry", '{"power_w": "x"}', 16, None, "power_w", "power_w is not a number", "invalid_item", T0),
            DeadLetter("dt/plant/m1/telemetry", "\x00garbage", 8, None, "payload", "not JSON", "invalid_json", T0 + timedelta(minutes=1)),
            DeadLetter("factory/l1/m9/power", '{"machine_id": "m9"}', 20, 2, "machine_id", "unknown asset m9", "unknown_asset", T0 + timedelta(minutes=2)),
        ]
    )


def test_operators_read_dead_letters_newest_first_with_filters_and_pages(
    client: TestClient, repo: Repository, operator_client: ClientAs, viewer_client: ClientAs
) -> None:
    _letters(repo)
    assert viewer_client.get("/api/v1/dead-letters").status_code == 403
    letters = operator_client.get("/api/v1/dead-letters").json()
    assert [d["reason_code"] for d in letters] == ["unknown_asset", "invalid_json", "invalid_item"]
    assert letters[0]["item_index"] == 2 and letters[0]["field"] == "machine_id" and letters[0]["received_at"] == "2026-11-01T12:02:00Z"
    assert letters[1]["payload"] == "\u2400garbage"  # NUL kept visible, storable on PostgreSQL
    only = operator_client.get("/api/v1/dead-letters", params={"reason_code": "invalid_item"}).json()
    assert [d["field"] for d in only] == ["power_w"]
    dt = operator_client.get("/api/v1/dead-letters", params={"topic_prefix": "dt/plant/"}).json()
    assert len(dt) == 2
    recent = operator_client.get("/api/v1/dead-letters", params={"since": "2026-11-01T12:01:00Z"}).json()
    assert len(recent) == 2
    first_page = operator_client.get("/api/v1/dead-letters", params={"limit": 2}).json()
    rest = operator_client.get("/api/v1/dead-letters", params={"before_id": first_page[-1]["id"]}).json()
    assert [d["id"] for d in first_page + rest] == [d["id"] for d in letters]
    naive = operator_client.get("/api/v1/dead-letters", params={"since": "2026-11-01T12:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "since"
    assert operator_client.get("/api/v1/dead-letters", params={"limit": 0}).status_code == 422
