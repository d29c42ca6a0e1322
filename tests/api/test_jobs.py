"""Trainings and backtests as jobs, on both databases: 202 + Location, state and progress, cancel, limits.

Before, POST /train and /backtests held the request until the work ended (201), or answered 504
after API_TIMEOUT while the work went on; nothing bounded how many ran, nor the fits one
backtest could ask for (an operator's four retrain_every=1 backtests kept the CPU at 75-95 %).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from digitaltwin.api.app import RETRAINING, create_app
from digitaltwin.config import Settings
from digitaltwin.jobs.run import JobRunner
from digitaltwin.jobs.store import JobKind, JobState, JobStore
from digitaltwin.security.roles import Role
from digitaltwin.services.retraining import RetrainScheduler
from digitaltwin.storage.repository import Repository
from digitaltwin.storage.tables import jobs
from tests.api.conftest import ClientAs, headers_for, wait_job
from tests.api.test_forecast_api import load_profile, register, store_hourly

#: 25 local midnights of the 35 days of load_profile, each a refit of two algorithms: 50 fits,
#: long enough to be seen running and cancelled.
LONG_BACKTEST = {"algorithms": ["lightgbm", "random_forest"], "start": "2024-03-10", "end": "2024-04-03", "retrain_every": 1}


def app_client(settings: Settings, **overrides: Any) -> TestClient:
    """A client (as an admin) of an app with ``overrides`` of the settings (field names)."""
    client = TestClient(create_app(settings.model_copy(update=overrides)))
    client.__enter__()
    client.headers.update(headers_for(client, Role.ADMIN, username="admin"))
    return client


@pytest.fixture
def one_at_a_time(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """An app whose host runs one job at a time, with two assets of 35 days of hourly load."""
    client = app_client(settings, jobs_max_concurrent=1)
    try:
        for asset in ("meter-j", "meter-k"):
            register(client, asset)
            store_hourly(repo, asset, load_profile(35))
        yield client
    finally:
        client.__exit__(None, None, None)


@pytest.fixture
def no_runner(settings: Settings, repo: Repository) -> Iterator[TestClient]:
    """An app that queues jobs but does not run them (JOBS_IN_PROCESS=false, no worker), small limits."""
    client = app_client(settings, jobs_in_process=False, jobs_max_per_asset=2, jobs_max_per_user=3, backtest_max_fits=60)
    try:
        for asset in ("meter-j", "meter-k", "meter-l"):
            register(client, asset)
            store_hourly(repo, asset, load_profile(35))
        yield client
    finally:
        client.__exit__(None, None, None)


def wait_for(client: TestClient, job_id: str, check: Any, what: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if check(job):
            return job
        assert time.monotonic() < deadline, f"{what}: {job}"
        time.sleep(0.05)


def test_train_answers_202_with_the_job_and_the_job_ends_with_the_model(one_at_a_time: TestClient) -> None:
    client = one_at_a_time
    response = client.post("/api/v1/assets/meter-j/train", json={"algorithm": "seasonal_naive_weekly"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{body['job_id']}" == body["url"]
    assert body["kind"] == "train" and body["asset_id"] == "meter-j" and body["requested_by"] == "user:admin"
    assert body["state"] in ("queued", "running") and body["params"]["algorithm"] == "seasonal_naive_weekly"
    job = wait_job(client, response)
    assert job["state"] == "succeeded" and job["progress"] == 1.0 and job["attempts"] == 1, job
    assert job["result"]["promoted"] is True and job["result_url"] == f"/api/v1/models/{job['result']['model_id']}"
    assert client.get(job["result_url"]).json()["active"] is True
    assert job["started_at"] >= job["created_at"] and job["finished_at"] >= job["started_at"]

    backtest = wait_job(client, client.post(
        "/api/v1/assets/meter-j/backtests", json={"algorithms": ["seasonal_naive_daily"], "start": "2024-03-20", "end": "2024-03-25"}
    ))
    assert backtest["state"] == "succeeded" and backtest["result"]["backtest_id"], backtest
    stored = client.get(backtest["result_url"]).json()
    assert stored["algorithms"] == ["seasonal_naive_daily"] and len(stored["origins"]) == 6

    listed = client.get("/api/v1/jobs", params={"asset_id": "meter-j", "state": "succeeded"}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [backtest["job_id"], job["job_id"]]  # newest first
    assert client.get("/api/v1/jobs", params={"state": "lost"}).json()["field"] == "state"
    assert client.get("/api/v1/jobs/nope").json()["field"] == "job_id"


def test_a_failing_job_keeps_the_error_with_its_field(one_at_a_time: TestClient, repo: Repository) -> None:
    register(one_at_a_time, "short-j")
    store_hourly(repo, "short-j", load_profile(3))
    job = wait_job(one_at_a_time, one_at_a_time.post("/api/v1/assets/short-j/train", json={"algorithm": "lightgbm"}))
    assert job["state"] == "failed" and job["error"]["field"] == "history" and job["result"] is None, job


def test_cancel_stops_a_running_backtest_and_a_queued_job_at_once(one_at_a_time: TestClient, settings: Settings) -> None:
    client = one_at_a_time
    long = client.post("/api/v1/assets/meter-j/backtests", json=LONG_BACKTEST).json()
    running = wait_for(client, long["job_id"], lambda j: j["state"] == "running" and j["progress"] > 0, "never seen running")
    # the host runs one job at a time: a second one waits queued, and is cancelled at once
    queued = client.post("/api/v1/assets/meter-k/train", json={"algorithm": "lightgbm"}).json()
    assert client.get(queued["url"]).json()["state"] == "queued"
    cancelled = client.post(f"/api/v1/jobs/{queued['job_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled" and cancelled.json()["started_at"] is None

    asked = client.post(f"/api/v1/jobs/{long['job_id']}/cancel").json()
    assert asked["cancel_requested"] is True and asked["state"] in ("running", "cancelled")
    ended = wait_for(client, long["job_id"], lambda j: j["state"] != "running", "cancel not honoured")
    assert ended["state"] == "cancelled" and ended["result"] is None, ended
    assert running["progress"] <= ended["progress"] < 1.0  # stopped between fits, not at the end
    assert not list((settings.data_dir / "backtests").glob("*")), "a cancelled backtest stored something"
    time.sleep(1.0)  # no fit goes on after the cancellation: nothing moves any more
    assert client.get(long["url"]).json()["progress"] == ended["progress"]
    assert client.get(queued["url"]).json()["state"] == "cancelled"  # never started later
    again = client.post(f"/api/v1/jobs/{long['job_id']}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"  # a finished job stays as it is


def test_only_the_submitter_or_an_admin_cancels(no_runner: TestClient) -> None:
    owner = ClientAs(no_runner, headers_for(no_runner, Role.OPERATOR))
    other = ClientAs(no_runner, headers_for(no_runner, Role.OPERATOR))
    viewer = ClientAs(no_runner, headers_for(no_runner, Role.VIEWER))
    first = owner.post("/api/v1/assets/meter-j/train", json={"algorithm": "lightgbm"}).json()
    refused = other.post(f"/api/v1/jobs/{first['job_id']}/cancel")
    assert refused.status_code == 403 and refused.json()["field"] == "job_id"
    assert viewer.post(f"/api/v1/jobs/{first['job_id']}/cancel").status_code == 403
    assert viewer.get(first["url"]).json()["state"] == "queued"  # a viewer reads jobs
    assert owner.post(f"/api/v1/jobs/{first['job_id']}/cancel").json()["state"] == "cancelled"
    second = owner.post("/api/v1/assets/meter-j/train", json={"algorithm": "lightgbm"}).json()
    assert no_runner.post(f"/api/v1/jobs/{second['job_id']}/cancel").json()["state"] == "cancelled"  # the admin


def test_limits_per_asset_per_user_and_fits_name_their_field(no_runner: TestClient) -> None:
    client = no_runner
    backtest = {"algorithms": ["seasonal_naive_daily"], "start": "2024-03-20", "end": "2024-03-25"}
    assert client.post("/api/v1/assets/meter-j/train", json={"algorithm": "lightgbm"}).status_code == 202
    second_training = client.post("/api/v1/assets/meter-j/train", json={"algorithm": "random_forest"})
    assert second_training.status_code == 409 and second_training.json()["field"] == "asset_id"
    assert "already queued or running" in second_training.json()["detail"]
    assert client.post("/api/v1/assets/meter-j/backtests", json=backtest).status_code == 202
    third = client.post("/api/v1/assets/meter-j/backtests", json=backtest)  # JOBS_MAX_PER_ASSET=2
    assert third.status_code == 409 and third.json()["field"] == "asset_id" and "JOBS_MAX_PER_ASSET" in third.json()["detail"]

    assert client.post("/api/v1/assets/meter-k/backtests", json=backtest).status_code == 202
    over = client.post("/api/v1/assets/meter-l/backtests", json=backtest)  # JOBS_MAX_PER_USER=3
    assert over.status_code == 429 and over.json()["field"] == "user" and int(over.headers["Retry-After"]) > 0
    other_user = ClientAs(client, headers_for(client, Role.OPERATOR))
    assert other_user.post("/api/v1/assets/meter-l/backtests", json=backtest).status_code == 202  # per user, not global

    metrics = client.get("/metrics").text  # what piles up in the queue is seen by Prometheus
    assert 'jobs{kind="backtest",state="queued"} 3.0' in metrics and 'jobs{kind="train",state="queued"} 1.0' in metrics
    assert 'jobs{kind="train",state="running"} 0.0' in metrics
    jobs = client.get("/api/v1/jobs", params={"state": "queued"}).json()["jobs"]
    cancelled = client.post(f"/api/v1/jobs/{jobs[-1]['job_id']}/cancel").json()
    assert cancelled["state"] == "cancelled"  # a cancelled job no longer counts
    assert client.post("/api/v1/assets/meter-l/backtests", json=backtest).status_code == 202

    # BACKTEST_MAX_FITS=60: two algorithms refitted at each of 31 origins is 62 fits
    many = {"algorithms": ["lightgbm", "rf"], "start": "2024-03-01", "end": "2024-03-31", "retrain_every": 1}
    for asset in ("meter-k", "meter-l"):
        refused = other_user.post(f"/api/v1/assets/{asset}/backtests", json=many)
        assert refused.status_code == 422 and refused.json()["field"] == "retrain_every", refused.text
        assert "62 model fits" in refused.json()["detail"]
    assert other_user.post("/api/v1/assets/meter-k/backtests", json=many | {"retrain_every": 2}).status_code == 202


def test_bad_requests_are_refused_before_queueing(no_runner: TestClient) -> None:
    client = no_runner
    cases = [
        ("/api/v1/assets/nope/train", {"algorithm": "lightgbm"}, 404, "asset_id"),
        ("/api/v1/assets/meter-j/train", {"algorithm": "prophet"}, 422, "algorithm"),
        ("/api/v1/assets/meter-j/train", {"algorithm": "lightgbm", "horizon": "PT90M"}, 422, "horizon"),
        ("/api/v1/assets/meter-j/backtests", {"algorithms": [], "start": "2024-03-20", "end": "2024-03-25"}, 422, "algorithms"),
        ("/api/v1/assets/meter-j/backtests", {"start": "2024-03-20", "end": "2024-03-10"}, 422, "end"),
        ("/api/v1/assets/meter-j/backtests", {"start": "2024-13-20", "end": "2024-03-25"}, 422, "start"),
        ("/api/v1/assets/meter-j/backtests", {"start": "2024-03-20", "end": "2024-03-25", "retrain_every": 0}, 422, "retrain_every"),
    ]
    for url, body, status, field in cases:
        response = client.post(url, json=body)
        assert (response.status_code, response.json()["field"]) == (status, field), (url, body, response.text)
    assert client.get("/api/v1/jobs").json()["jobs"] == []


def test_lost_jobs_are_queued_again_then_failed_and_the_host_limit_holds(repo: Repository) -> None:
    """The queue itself on the real database: a worker on another host stops heartbeating."""
    store = JobStore(repo.engine, max_running_per_host=1)
    runner = JobRunner(store, None, stale_s=600, max_attempts=2)  # type: ignore[arg-type] - only recovery is used
    first = store.insert(JobKind.TRAIN, "meter-x", {"algorithm": "lightgbm"}, requested_by="user:a")
    second = store.insert(JobKind.TRAIN, "meter-y", {"algorithm": "lightgbm"}, requested_by="user:a")
    assert store.claim("far/1/aa", "far").id == first.id  # type: ignore[union-attr]
    assert store.claim("far/2/bb", "far") is None  # the host runs its one job (JOBS_MAX_CONCURRENT=1)
    assert store.claim("near/3/cc", "near").id == second.id  # type: ignore[union-attr]

    def heartbeat_stops(job_id: str) -> None:
        with repo.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(heartbeat_at=datetime.now(UTC) - timedelta(hours=1)))

    runner.recover()
    assert store.get(first.id).state is JobState.RUNNING  # a fresh heartbeat of another host: alive
    heartbeat_stops(first.id)
    runner.recover()
    again = store.get(first.id)
    assert again.state is JobState.QUEUED and again.attempts == 1 and again.progress == 0
    assert store.claim("far/4/dd", "far").attempts == 2  # type: ignore[union-attr]
    heartbeat_stops(first.id)
    runner.recover()
    failed = store.get(first.id)
    assert failed.state is JobState.FAILED and "2 attempts" in failed.error["detail"]  # type: ignore[index]

    store.request_cancel(second.id)  # asked to stop, then its worker died before seeing it
    heartbeat_stops(second.id)
    runner.recover()
    assert store.get(second.id).state is JobState.CANCELLED


def test_scheduled_retraining_is_queued_as_a_job(one_at_a_time: TestClient) -> None:
    client = one_at_a_time
    first = wait_job(client, client.post("/api/v1/assets/meter-j/train", json={"algorithm": "seasonal_naive_weekly"}))
    state = client.app.state.dt  # type: ignore[attr-defined]
    scheduler = RetrainScheduler(
        state.forecasts, default_hours=1,
        submit=lambda asset, algorithm, horizon: state.jobs.submit_train(asset, algorithm, horizon, requested_by=RETRAINING),
    )
    later = datetime.now(UTC) + timedelta(hours=2)
    outcome, = scheduler.run_due(later)
    assert outcome.job_id is not None and outcome.result is None and outcome.error is None
    again, = scheduler.run_due(later)  # still queued or running: skipped, not queued twice
    assert again.job_id is None and again.error is not None and "ConflictError" in again.error
    job = wait_for(client, outcome.job_id, lambda j: j["state"] in ("succeeded", "failed"), "retraining did not end")
    assert job["state"] == "succeeded" and job["requested_by"] == RETRAINING and job["kind"] == "train", job
    assert job["result"]["previous_champion"] == first["result"]["model_id"]
    assert "without newer data" in job["result"]["reason"]
