"""JSON-lines log files in ``LOG_DIR``, rotated at midnight (UTC) and kept :data:`RETENTION_DAYS` days.

* ``digital_twin.log``: every application record (``digitaltwin.*`` loggers) at ``LOG_LEVEL`` and up;
* ``error.log``: the ``ERROR`` and ``CRITICAL`` records of the same loggers;
* ``access.log``: one record per HTTP request (``digitaltwin.access``, written by
  :class:`digitaltwin.observability.requests.RequestIdMiddleware` through :data:`ACCESS_LOG`,
  which builds each line itself and hands the lines of one event-loop turn to the handler at once).

Each line is one JSON object: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
``request_id`` (``null`` outside a request), any ``extra`` fields, and ``exc_info`` for exceptions.

Several worker processes write the same files, so the handlers come from
``concurrent-log-handler``: rotation is done under a file lock by exactly one process and
the rollover time is shared, so no process deletes another's day (the standard library's
``TimedRotatingFileHandler`` does, see https://docs.python.org/3/howto/logging-cookbook.html
"Logging to a single file from multiple processes").

No secret reaches a file: every line passes :func:`redact`, which masks bearer tokens, JWTs,
passwords in URLs, ``password=``/``token=``-style pairs, and the literal values of the
configured secrets (``SECRET_KEY``, database, Redis, MQTT and Grafana passwords).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import orjson
from concurrent_log_handler import ConcurrentTimedRotatingFileHandler

from digitaltwin.private_files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "digitaltwin.access"
#: Days of rotated files kept (the production guide's retention for application logs).
RETENTION_DAYS = 14
#: What replaces a secret in a log line.
MASK = "[REDACTED]"

#: Request id of the request being served in this context (set by the request-id middleware).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

_SECRET_NAMES = (
    r"password|passwd|pwd|secret|secret_key|token|access_token|refresh_token|id_token|api_key|apikey"
    r"|authorization|client_secret|totp|otp_code|mfa_code"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <token> / Basic <credentials>
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{MASK}"),
    # JSON Web Tokens anywhere (header.payload.signature, base64url)
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    # scheme://user:password@host
    (re.compile(r"(://[^:/@\s\"]*:)[^@\s\"/]+@"), rf"\1{MASK}@"),
)
# password=..., "token": "...", secret: '...' (also inside JSON-escaped strings): a quoted value is
# masked up to its closing quote, a bare one up to the next separator.
_PAIR = re.compile(
    rf"(?i)\b(?P<key>{_SECRET_NAMES})(?P<sep>\\?[\"']?\s*[:=]\s*)"
    r"(?:(?P<quote>\\?[\"'])(?!\[REDACTED\])(?P<quoted>.*?)(?P=quote)"
    r"|(?!\[REDACTED\]|bearer\b|basic\b)(?P<bare>[^\s\"'&,;\\}]+))"
)


def _mask_pair(match: re.Match[str]) -> str:
    if match.group("quote") is not None:
        return f"{match.group('key')}{match.group('sep')}{match.group('quote')}{MASK}{match.group('quote')}"
    return f"{match.group('key')}{match.group('sep')}{MASK}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every recognised credential replaced by :data:`MASK`.

    Args:
        text: a formatted log line (or any string).
        secrets: literal secret values to mask wherever they appear; values shorter than
            4 characters are ignored (they would mask ordinary words).
    """
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _PAIR.sub(_mask_pair, text)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (from :data:`REQUEST_ID`) to every record passing through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per record, passed through :func:`redact` after serialisation.

    Redacting the serialised line covers the message, its arguments, ``extra`` fields and
    exception tracebacks alike.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            json_ensure_ascii=False,
        )
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, PREFORMATTED, False):  # lines of AccessLog, built and redacted already
            return record.getMessage()
        return redact(super().format(record), self._secrets)


#: Seconds access lines may wait to be handed to the file handler together after the previous hand-over.
FLUSH_INTERVAL_S = 0.02
#: Attribute of a record whose message is finished JSON lines (see :class:`AccessLog`).
PREFORMATTED = "digitaltwin_preformatted"


class AccessLog:
    """The ``access.log`` lines: one JSON object per request, the keys and order of
    :class:`RedactingJsonFormatter`'s (``level``, ``logger``, ``message``, ``request_id``, the
    request's fields, ``time``), handed to the access logger's handlers in batches.

    Why not one ``logging`` call per request: the file handler takes a file lock, checks the
    file and writes for each record (about 70 us), and the generic formatter redacts the whole
    line with four regular expressions (about 30 us), together more than a bare FastAPI request
    costs. Here a line costs an ``orjson`` dump; only the fields a client controls (path and
    request id) are redacted, with a cache since paths repeat; and the pending lines go to the
    handler as one record, right after the current turn of the event loop (``call_soon``) when
    the last hand-over is at least :data:`FLUSH_INTERVAL_S` old, else that long after it: a lone
    request's line is written right after its answer, while under load one lock and one write
    (about 60 us of the handler's file locking and rollover checks) serve every request of the
    interval rather than the one or two of a loop turn. :meth:`flush` writes what is pending
    (the app's lifespan calls it at shutdown, and so does ``atexit``).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending: list[str] = []
        self._flushed_at = 0.0  # time.monotonic() of the last hand-over
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._redacted = lru_cache(maxsize=4096)(self._redact)

    def configure(self, secrets: Iterable[str]) -> None:
        """Literal secret values masked in the redacted fields (as :func:`redact` takes them)."""
        self.flush()
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._redacted.cache_clear()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def write(
        self, *, request_id: str | None, method: str | None, route: str | None, path: str | None,
        status: int, duration_ms: float, client: str | None, request_id_given: bool = True,
    ) -> None:
        """Queue the line of one request (``duration_ms`` in milliseconds); written after this loop turn.

        ``request_id_given``: False when the id was generated here (a UUID4 hex), which cannot
        hold a secret and is not redacted (each one is new: it would miss the cache every time).
        """
        if not self.logger.handlers:
            return
        path = self._redacted(path) if path else path
        request_id = self._redacted(request_id) if request_id and request_id_given else request_id
        method = self._redacted(method) if method else method
        line = orjson.dumps({
            "level": "INFO", "logger": self.logger.name, "message": f"{method} {path} {status}", "request_id": request_id,
            "method": method, "route": route, "path": path, "status": status, "duration_ms": duration_ms, "client": client,
            "time": datetime.now(UTC).isoformat(),
        }).decode()
        with self._lock:
            self._pending.append(line)
            first = len(self._pending) == 1
        if first:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: write now
                self.flush()
                return
            wait = self._flushed_at + FLUSH_INTERVAL_S - time.monotonic()
            if wait > 0:
                loop.call_later(wait, self.flush)
            else:
                loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand the pending lines to the access logger's handlers as one record."""
        with self._lock:
            lines, self._pending = self._pending, []
            self._flushed_at = time.monotonic()
        if not lines:
            return
        record = self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0, "\n".join(lines), None, None)
        setattr(record, PREFORMATTED, True)
        self.logger.handle(record)


def _file_handler(path: Path, level: int, secrets: Iterable[str]) -> logging.Handler:
    # chmod: log lines can carry user names, addresses and request details; owner-only, like the folder
    handler = ConcurrentTimedRotatingFileHandler(
        str(path), when="midnight", backupCount=RETENTION_DAYS, utc=True, encoding="utf-8", chmod=PRIVATE_FILE_MODE
    )
    handler.setLevel(level)
    handler.setFormatter(RedactingJsonFormatter(secrets))
    handler.addFilter(RequestIdFilter())
    handler._digitaltwin = True  # type: ignore[attr-defined]
    return handler


def _remove_ours(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, "_digitaltwin", False):
            logger.removeHandler(handler)
            handler.close()


#: The process's access log (the request-id middleware writes to it).
ACCESS_LOG = AccessLog(logging.getLogger(ACCESS_LOGGER))
atexit.register(ACCESS_LOG.flush)


def configure_logging(log_dir: Path, *, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send application logs to ``digital_twin.log``, errors also to ``error.log``, requests to ``access.log``.

    Args:
        log_dir: ``LOG_DIR``; created when missing.
        level: ``LOG_LEVEL`` of the application loggers.
        secrets: literal secret values masked in every line (see :func:`secret_values`).

    Idempotent: handlers installed by an earlier call are replaced.
    """
    log_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    secrets = tuple(secrets)
    root = logging.getLogger("digitaltwin")
    access = logging.getLogger(ACCESS_LOGGER)
    ACCESS_LOG.flush()  # pending lines go to the files they were written for
    _remove_ours(root)
    _remove_ours(access)
    root.setLevel(level)
    root.addHandler(_file_handler(log_dir / "digital_twin.log", logging.DEBUG, secrets))
    root.addHandler(_file_handler(log_dir / "error.log", logging.ERROR, secrets))
    access.setLevel(logging.INFO)
    access.propagate = False  # request lines go to access.log only
    access.addHandler(_file_handler(log_dir / "access.log", logging.INFO, secrets))
    ACCESS_LOG.configure(secrets)


def secret_values(settings: object) -> list[str]:
    """The configured secret values of a :class:`digitaltwin.config.Settings` (unset ones skipped).

    Any attribute whose name ends in ``_key``, ``_password`` or ``_secret`` counts, so
    secrets added by other areas are masked without changing this module.
    """
    names = [n for n in type(settings).model_fields if n.endswith(("_key", "_password", "_secret"))]  # type: ignore[attr-defined]
    values = [getattr(settings, n, None) for n in names]
    return [str(v.get_secret_value() if hasattr(v, "get_secret_value") else v) for v in values if v]
