"""Whether the readings table becomes a TimescaleDB hypertable (``TIMESCALEDB=auto|on|off``).

TimescaleDB can only be created in a database when the server lists the extension
(``pg_available_extensions``) *and* loads its library at start (``shared_preload_libraries``);
an extension that is installed but not preloaded fails ``CREATE EXTENSION``, and inside the
migration's transaction that undid every table. So the migration decides first:

* ``off``: plain PostgreSQL, whatever the server offers;
* ``on``: TimescaleDB or the migration stops with a message saying what is missing;
* ``auto`` (default): TimescaleDB when usable, else plain PostgreSQL with a warning naming the
  reason. A database that already has the extension keeps using it.

Plain PostgreSQL keeps every feature: the hypertable only adds chunking and compression
(docs/operations.md, "TimescaleDB").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

Mode = Literal["auto", "on", "off"]
MODES: tuple[Mode, ...] = ("auto", "on", "off")


@dataclass(frozen=True, slots=True)
class ServerSupport:
    """What the PostgreSQL server offers for TimescaleDB.

    Attributes:
        available: the server lists the extension (its files are installed).
        preloaded: ``timescaledb`` is in ``shared_preload_libraries``.
        installed: the extension already exists in this database.
    """

    available: bool
    preloaded: bool
    installed: bool


def probe(conn: Connection) -> ServerSupport:
    """Read :class:`ServerSupport` from a PostgreSQL connection (three catalog reads)."""
    available = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")).scalar() is not None
    libraries = conn.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar() or ""
    preloaded = "timescaledb" in [name.strip() for name in str(libraries).split(",")]
    installed = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar() is not None
    return ServerSupport(available, preloaded, installed)


def use_timescaledb(mode: str, support: ServerSupport) -> bool:
    """Whether to create (or keep) the hypertable under ``mode`` given the server's ``support``.

    Raises:
        RuntimeError: ``mode`` is ``on`` and TimescaleDB cannot be used (the message says why),
            or ``mode`` is not one of :data:`MODES`.
    """
    if mode not in MODES:
        raise RuntimeError(f"TIMESCALEDB must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return False
    if support.installed:
        return True
    if support.available and support.preloaded:
        return True
    reason = (
        "the server does not list the timescaledb extension"
        if not support.available
        else "timescaledb is installed but not in shared_preload_libraries"
    )
    if mode == "on":
        raise RuntimeError(f"TIMESCALEDB=on but {reason}; preload it or set TIMESCALEDB=auto or off")
    log.warning("TimescaleDB not used (%s): readings is a plain PostgreSQL table; TIMESCALEDB=off silences this", reason)
    return False
