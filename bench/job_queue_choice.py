"""Which queue for trainings and backtests: the jobs table on PostgreSQL, or RQ on Redis?

Both are measured with one separate worker process and no-op jobs, so what is timed is the
queue itself (a training takes seconds to minutes; what matters is that the queue adds little
and loses nothing):

* enqueue: milliseconds to submit one job (the API's share of a POST /train);
* latency: enqueue -> start of a job on an idle worker, ``--rounds`` times one job at a time
  (p50 / p95, ms);
* drain: no-op jobs per second through one worker from a burst of ``--burst`` jobs;
* crash: the worker is killed (SIGKILL) while running a 30 s job and a new worker is started;
  printed is what became of the job and after how long.

Candidates: ``table`` is the product's queue (:class:`digitaltwin.jobs.store.JobStore`: the
jobs table, claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` under the host limit, an idle
worker polling every ``--poll`` s), with the runner's lost-job recovery; ``rq`` is RQ 2.x
(BLPOP wake-up, a forked work horse per job, its default ``Worker``).

Measured on the project's 2-core machine (2026-12-05, shared with ~8 other builds, so the spread
is wide; local PostgreSQL 15 and Redis 7; ``--rounds 30 --burst 150 --poll 0.2``, three runs; the
table's enqueue includes reading the stored job back, as the API does for its 202 body):

    queue   enqueue ms  latency p50 / p95 ms   drain jobs/s   worker killed mid-job (SIGKILL)
    table     24 - 76     178-200 / 201-208       46 - 429     re-queued by the next worker at its
                                                               start (same host: dead pid; else after
                                                               JOBS_STALE_SECONDS), ran again: succeeded
                                                               12 s after the kill (incl. imports)
    rq        2 - 11       20-64  /  40-96        10 - 23      still "started" 240 s after the kill;
                                                               RQ only moves it to its failed registry
                                                               at a later clean-up; never run again
                                                               without a Retry policy

See docs/operations.md#jobs for the choice: the table queue. Its latency is its poll period
(JOBS_POLL_SECONDS, 1 s by default: nothing for jobs of seconds to minutes); it needs no new
service or dependency, keeps the job's state, progress and result where the API reads them, in
the same transaction as the claim, and re-runs a lost job, where RQ drops it to its failed
registry and its state would still have to be mirrored into the database for GET /jobs.

Usage: ``.venv/bin/python bench/job_queue_choice.py [--rounds 40] [--burst 200] [--poll 0.2]``
(needs PostgreSQL at ``DT_TEST_POSTGRES_URL`` or postgresql://postgres@127.0.0.1:5432/postgres,
Redis at ``DT_TEST_REDIS_URL`` or redis://127.0.0.1:6379/0; rq from the ``bench`` extra). Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

PG = os.environ.get("DT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NOOP = "job_queue_choice.noop"  # by name: the worker imports this module, not __main__
REDIS = os.environ.get("DT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def noop(seconds: float = 0.0) -> str:
    """The job of both queues (RQ imports it from this module)."""
    if seconds:
        time.sleep(seconds)
    return "ok"


# ---------------------------------------------------------------------------------- table queue
def _engine(url: str):  # noqa: ANN202
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def table_worker(url: str, poll: float) -> None:
    """A worker of the table queue: claim, run (sleep for ``params.seconds``, heartbeating), finish."""
    from digitaltwin.jobs.run import JobRunner
    from digitaltwin.jobs.store import JobState, JobStore

    store = JobStore(_engine(url), max_running_per_host=1)
    runner = JobRunner(store, None, stale_s=60, max_attempts=2)  # type: ignore[arg-type] - only its recovery is used
    runner.recover()
    while True:
        job = store.claim(runner.worker_id, runner.host)
        if job is None:
            time.sleep(poll)
            continue
        end = time.monotonic() + float(job.params.get("seconds", 0))
        while time.monotonic() < end:
            time.sleep(0.5)
            store.heartbeat([job.id], runner.worker_id)
        store.finish(job.id, runner.worker_id, JobState.SUCCEEDED, result={"ok": True})


def bench_table(url: str, rounds: int, burst: int, poll: float) -> dict[str, object]:
    from digitaltwin.jobs.store import JobKind, JobStore

    store = JobStore(_engine(url), max_running_per_host=1)
    worker = _spawn("table", url, poll)
    try:
        time.sleep(3)  # imports
        t0 = time.perf_counter()
        ids = [store.insert(JobKind.TRAIN, "a", {}, requested_by="bench").id for _ in range(rounds)]
        enqueue_ms = (time.perf_counter() - t0) / rounds * 1000
        _wait(lambda: all(store.get(i).state.final for i in ids), 120)
        latencies = []  # after the first batch (a warm worker): one job at a time on an idle worker
        for _ in range(rounds):
            job = store.insert(JobKind.TRAIN, "a", {}, requested_by="bench")
            _wait(lambda: store.get(job.id).state.final, 60)
            done = store.get(job.id)
            latencies.append((done.started_at - done.created_at).total_seconds() * 1000)
        ids = [store.insert(JobKind.TRAIN, "a", {}, requested_by="bench").id for _ in range(burst)]
        t0 = time.perf_counter()
        _wait(lambda: store.count_active() == 0, 600, period=0.05)
        drain = burst / (time.perf_counter() - t0)
        crash = _table_crash(store, worker, url, poll)
        worker = crash.pop("worker")  # type: ignore[assignment]
    finally:
        _kill(worker)
    return {"enqueue_ms": enqueue_ms, "latencies": latencies, "drain": drain, **crash}


def _table_crash(store, worker: subprocess.Popen, url: str, poll: float) -> dict[str, object]:  # noqa: ANN001
    from digitaltwin.jobs.store import JobKind, JobState

    job = store.insert(JobKind.TRAIN, "a", {"seconds": 30}, requested_by="bench")
    _wait(lambda: store.get(job.id).state is JobState.RUNNING, 30)
    _kill(worker)
    killed = time.perf_counter()
    worker = _spawn("table", url, poll)
    _wait(lambda: store.get(job.id).attempts == 2, 120)
    rerun_s = time.perf_counter() - killed
    _wait(lambda: store.get(job.id).state.final, 120)
    final = store.get(job.id)
    return {"worker": worker, "crash": f"re-run after {rerun_s:.1f} s (new worker's start incl. imports), ended {final.state.value}"}


# ---------------------------------------------------------------------------------------- RQ
def rq_worker(url: str, queue: str) -> None:
    import redis
    from rq import Queue, Worker

    conn = redis.Redis.from_url(url)
    Worker([Queue(queue, connection=conn)], connection=conn).work(with_scheduler=False, logging_level="WARNING")


def bench_rq(url: str, rounds: int, burst: int) -> dict[str, object]:
    import redis
    from rq import Queue
    from rq.job import JobStatus

    conn = redis.Redis.from_url(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=conn)
    worker = _spawn("rq", url, queue=name)
    try:
        time.sleep(3)
        t0 = time.perf_counter()
        jobs = [queue.enqueue(NOOP) for _ in range(rounds)]
        enqueue_ms = (time.perf_counter() - t0) / rounds * 1000
        _wait(lambda: all(j.get_status(refresh=True) == JobStatus.FINISHED for j in jobs), 120)
        latencies = []
        for _ in range(rounds):
            job = queue.enqueue(NOOP)
            _wait(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, 60)
            job.refresh()
            latencies.append((job.started_at - job.enqueued_at).total_seconds() * 1000)
        jobs = [queue.enqueue(NOOP) for _ in range(burst)]
        t0 = time.perf_counter()
        _wait(lambda: jobs[-1].get_status(refresh=True) == JobStatus.FINISHED and len(queue) == 0, 600, period=0.05)
        drain = burst / (time.perf_counter() - t0)

        job = queue.enqueue(NOOP, 30)
        _wait(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30)
        _kill(worker)
        killed = time.perf_counter()
        worker = _spawn("rq", url, queue=name)
        deadline = time.perf_counter() + 240
        status = job.get_status(refresh=True)
        while time.perf_counter() < deadline and status == JobStatus.STARTED:
            time.sleep(0.5)
            status = job.get_status(refresh=True)
        crash = f"after {time.perf_counter() - killed:.0f} s: {status}"
    finally:
        _kill(worker)
        queue.delete(delete_jobs=True)
    return {"enqueue_ms": enqueue_ms, "latencies": latencies, "drain": drain, "crash": crash}


# ------------------------------------------------------------------------------------ helpers
def _spawn(kind: str, url: str, poll: float = 0.2, queue: str = "") -> subprocess.Popen:
    args = [sys.executable, __file__, "--worker", kind, "--url", url, "--poll", str(poll), "--queue", queue]
    # its own session, so the bench's kill reaches the worker's processes only
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its children (RQ's work horse calls setsid, so it has its own group)."""
    children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def _wait(check, timeout_s: float, period: float = 0.01) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("queue did not get there")
        time.sleep(period)


def _fresh_database() -> tuple[str, object]:
    admin = create_engine(PG.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    name = f"bench_jobs_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    from digitaltwin.storage.db import migrate

    migrate(_engine(url))
    return url, (admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--poll", type=float, default=0.2, help="idle poll period of the table queue's worker (s)")
    parser.add_argument("--worker", choices=["table", "rq"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--queue", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "table":
        table_worker(args.url, args.poll)
        return
    if args.worker == "rq":
        rq_worker(args.url, args.queue)
        return
    url, (admin, name) = _fresh_database()
    try:
        results = {"table": bench_table(url, args.rounds, args.burst, args.poll), "rq": bench_rq(REDIS, args.rounds, args.burst)}
    finally:
        with admin.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, rounds={args.rounds} burst={args.burst} poll={args.poll}s")
    print(f"{'queue':6}  {'enqueue ms':>10}  {'latency p50/p95 ms':>18}  {'drain jobs/s':>12}  worker killed mid-job")
    for queue, r in results.items():
        lat = sorted(r["latencies"])  # type: ignore[arg-type]
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        print(f"{queue:6}  {r['enqueue_ms']:10.1f}  {statistics.median(lat):8.0f} / {p95:<7.0f}  {r['drain']:12.0f}  {r['crash']}")
    ratio = statistics.median(results["table"]["latencies"]) / max(statistics.median(results["rq"]["latencies"]), 1e-3)  # type: ignore[arg-type]
    print(f"table/rq latency ratio (p50): {ratio:.0f}x; it is the poll period, {args.poll} s here")


if __name__ == "__main__":
    main()
