"""API worker processes of ``digitaltwin serve --workers N``: one listening socket per worker (SO_REUSEPORT).

uvicorn's own ``--workers`` binds one socket in the parent and lets every worker accept from
it. The kernel then wakes whichever workers wait in ``accept`` at that moment, and a busy
worker is no less likely to take the next connection than an idle one: with keep-alive
clients, whose connections live for the whole session, one worker could hold most of them
(measured with bench/serving_postgres.py, see docs/operations.md). Here each worker binds its
own socket to the same address with ``SO_REUSEPORT`` (Linux 3.9+), and the kernel spreads new
connections evenly over the sockets by a hash of the connection's addresses.

The parent only supervises, as uvicorn's supervisor did: it spawns ``N`` processes, restarts one
that dies (after :data:`RESTART_DELAY_S`), and on SIGTERM or SIGINT sends SIGTERM to every worker,
which stops accepting, finishes its requests and runs the app's shutdown (uvicorn's graceful
shutdown), then waits up to :data:`STOP_GRACE_S` before killing what is left. A worker whose
parent is gone stops by itself. The parent never listens itself: a listening socket in the
group would get its share of connections and never answer them.

Caveat of ``SO_REUSEPORT``: two serve processes of the same user on the same port share its
connections instead of the second failing to start; the parent checks the port is free before
spawning any worker, which catches the usual case (a serve already running) unless both start
at the same moment.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

log = logging.getLogger(__name__)

#: Seconds before a worker that died is started again.
RESTART_DELAY_S = 1.0
#: Seconds the workers are given to finish their requests once told to stop.
STOP_GRACE_S = 45.0
#: Pending connections per worker socket (uvicorn's default backlog).
BACKLOG = 2048
#: The ASGI app each worker imports (it configures the worker's log files, see digitaltwin.api.asgi).
APP = "digitaltwin.api.asgi:app"


def reuse_port_supported() -> bool:
    """True where ``SO_REUSEPORT`` spreads connections over sockets (Linux; elsewhere uvicorn's supervisor is used)."""
    return hasattr(socket, "SO_REUSEPORT") and os.name == "posix" and os.uname().sysname == "Linux"


def bind_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` with ``SO_REUSEADDR`` and ``SO_REUSEPORT`` (listening unless ``listen`` is False).

    Raises:
        OSError: the address is taken by a socket without ``SO_REUSEPORT`` or of another user.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on ``(host, port)`` (a serve already running there)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    try:
        with socket.create_connection((target, port), timeout=1):
            return True
    except OSError:
        return False


def _watch_parent(server: object, parent: int) -> None:
    """Stop the worker's server when its parent is gone (killed without passing on the signal)."""
    while not getattr(server, "should_exit", False):
        if os.getppid() != parent:
            log.error("API worker %d: the serve process is gone; stopping", os.getpid())
            server.should_exit = True  # type: ignore[attr-defined]
            return
        time.sleep(1.0)


def _worker_main(host: str, port: int, parent: int) -> None:
    """Entry point of a worker process (spawned): its own socket, then uvicorn until SIGTERM/SIGINT."""
    import uvicorn

    from digitaltwin.api.server import ApiServer

    # Bound but not listening: the kernel adds a socket to the port's group at listen(), which
    # uvicorn calls once the app is imported and its lifespan has started. Connections sent to a
    # worker still starting would wait in its backlog, and be reset if its start-up failed.
    sock = bind_socket(host, port, listen=False)
    # uvicorn's X-Forwarded-For handling stays off (see the serve command); access lines are
    # written by the app's request-id middleware.
    config = uvicorn.Config(APP, access_log=False, proxy_headers=False)
    server = ApiServer(config)
    threading.Thread(target=_watch_parent, args=(server, parent), name="parent-watch", daemon=True).start()
    server.run(sockets=[sock])


def run_api_workers(host: str, port: int, workers: int, *, on_start: Callable[[int | None], None] | None = None) -> None:
    """Serve the API with ``workers`` processes, each on its own ``SO_REUSEPORT`` socket, until SIGTERM/SIGINT.

    Call from the main thread (it installs the signal handlers). The workers inherit the
    environment (``PROMETHEUS_MULTIPROC_DIR``, ``MQTT_API_SUBSCRIBER``) as it is at this call.

    Args:
        on_start: called with each worker's pid when it is (re)started.

    Raises:
        OSError: naming the address when it is already in use.
    """
    if port_in_use(host, port):
        raise OSError(f"address {host}:{port} is already in use")
    bind_socket(host, port, listen=False).close()  # taken by a socket without SO_REUSEPORT: fail here, once
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()
    parent = os.getpid()

    def launch() -> BaseProcess:
        process = ctx.Process(target=_worker_main, args=(host, port, parent), name="api-worker", daemon=False)
        process.start()
        if on_start is not None:
            on_start(process.pid)
        return process

    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    processes = [launch() for _ in range(workers)]
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                log.error("API worker %s exited with %s; restarting in %.0f s", process.pid, process.exitcode, RESTART_DELAY_S)
                _forget_metrics(process.pid)
                if stop.wait(RESTART_DELAY_S):
                    break
                processes[i] = launch()
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.error("API worker %s did not stop in %.0f s; killing it", process.pid, STOP_GRACE_S)
                process.kill()
                process.join(5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _forget_metrics(pid: int | None) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics (prometheus_client's ``mark_process_dead``)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if pid is None or not directory:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)
