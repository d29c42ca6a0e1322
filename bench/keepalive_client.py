"""A one-thread HTTP/1.1 load client over keep-alive sockets (``selectors``), for the latency benches.

Each connection has one request in flight; an answer is complete when its ``Content-Length``
bytes have arrived and must have status 200. It stops sending after ``total`` requests or once
``seconds`` have passed, whichever comes first, and returns every request's latency and the
elapsed time. Used when ``wrk`` is not installed, and kept light so that the client does not take
the server's cores (a thread pool of HTTP clients did).
"""

from __future__ import annotations

import math
import re
import selectors
import socket
import time

_LENGTH = re.compile(r"(?im)^content-length:\s*(\d+)")


def drive(port: int, request: bytes, *, connections: int, total: int | None = None,
          seconds: float | None = None) -> tuple[list[float], float]:
    """Send ``request`` (raw bytes) over ``connections`` sockets; returns (latencies in s, elapsed s)."""
    limit = total if total is not None else math.inf
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    sent_at: dict[socket.socket, float] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    stop = started + seconds if seconds is not None else math.inf
    sent = 0
    for _ in range(int(min(connections, limit))):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffers[sock] = bytearray()
        selector.register(sock, selectors.EVENT_READ)
        sent_at[sock] = time.perf_counter()
        sock.sendall(request)
        sent += 1
    in_flight = len(buffers)
    while in_flight:
        for key, _ in selector.select(timeout=30):
            sock = key.fileobj  # type: ignore[assignment]
            chunk = sock.recv(1 << 16)  # type: ignore[union-attr]
            assert chunk, "the server closed a connection"
            buffer = buffers[sock]  # type: ignore[index]
            buffer += chunk
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = bytes(buffer[:head_end]).decode("latin-1")
            length = int(_LENGTH.search(head).group(1))  # type: ignore[union-attr]
            if len(buffer) < head_end + 4 + length:
                continue
            assert head.startswith("HTTP/1.1 200"), head.splitlines()[0]
            del buffer[: head_end + 4 + length]
            now = time.perf_counter()
            latencies.append(now - sent_at[sock])  # type: ignore[index]
            if sent < limit and now < stop:
                sent_at[sock] = now  # type: ignore[index]
                sock.sendall(request)  # type: ignore[union-attr]
                sent += 1
            else:
                in_flight -= 1
    elapsed = time.perf_counter() - started
    for sock in buffers:
        selector.unregister(sock)
        sock.close()
    return latencies, elapsed
