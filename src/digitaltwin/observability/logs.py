"""JSON-lines log files in ``LOG_DIR``, rotated at midnight (UTC) and kept :data:`RETENTION_DAYS` days.

* ``digital_twin.log``: every application record (``digitaltwin.*`` loggers) at ``LOG_LEVEL`` and up;
* ``error.log``: the ``ERROR`` and ``CRITICAL`` records of the same loggers;
* ``access.log``: one record per HTTP request (``digitaltwin.access``, written by
  :class:`digitaltwin.observability.requests.RequestIdMiddleware`).

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

import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path

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
        return redact(super().format(record), self._secrets)


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
    _remove_ours(root)
    _remove_ours(access)
    root.setLevel(level)
    root.addHandler(_file_handler(log_dir / "digital_twin.log", logging.DEBUG, secrets))
    root.addHandler(_file_handler(log_dir / "error.log", logging.ERROR, secrets))
    access.setLevel(logging.INFO)
    access.propagate = False  # request lines go to access.log only
    access.addHandler(_file_handler(log_dir / "access.log", logging.INFO, secrets))


def secret_values(settings: object) -> list[str]:
    """The configured secret values of a :class:`digitaltwin.config.Settings` (unset ones skipped).

    Any attribute whose name ends in ``_key``, ``_password`` or ``_secret`` counts, so
    secrets added by other areas are masked without changing this module.
    """
    names = [n for n in type(settings).model_fields if n.endswith(("_key", "_password", "_secret"))]  # type: ignore[attr-defined]
    values = [getattr(settings, n, None) for n in names]
    return [str(v.get_secret_value() if hasattr(v, "get_secret_value") else v) for v in values if v]
