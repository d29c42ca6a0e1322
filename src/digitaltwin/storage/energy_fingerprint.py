"""Everything stored that an asset's energy report is computed from, read in one statement.

An energy report (:func:`digitaltwin.services.energy.energy_report`) depends on the asset (kind,
rated power, attributes), its site's time zone, its series (quantity, kind, unit, interval,
declared attributes), each counter's meter replacements, and the series' readings. Readings are
not read here: every write or delete of readings marks its time span in ``energy_rollup_dirty``
in the writer's own transaction, and marks are only removed by a rollup refresh, which bumps
the series' ``energy_rollup_state.version`` in the same transaction
(:mod:`digitaltwin.storage.rollups`). So, per series, (rollup version, number of marks, highest
mark id) changes with every committed change of its readings: within one version marks are only
added. Meter replacements are only ever added, so their count and highest id name them.

The last reading's time is read too: a report whose range reaches past ``now`` holds the last
power sample until ``now`` at most, so whether the report still depends on ``now`` is decided
from it (:mod:`digitaltwin.services.energy_answers`). So is the site's country, which energy
reports do not read but forecasts do (its holidays, :mod:`digitaltwin.services.forecast_answers`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, bindparam, func, select
from sqlalchemy.dialects import postgresql

from digitaltwin.storage.db import fetch_autocommit

from digitaltwin.storage.tables import (
    assets,
    energy_rollup_dirty,
    energy_rollup_state,
    meter_events,
    readings,
    series,
    sites,
)

_OF = series.c.id
_STATEMENT = (
    select(
        assets.c.kind,
        assets.c.rated_power_kw,
        assets.c.attributes,
        sites.c.id,
        sites.c.timezone,
        series.c.id,
        series.c.quantity,
        series.c.kind,
        series.c.unit,
        series.c.interval_seconds,
        series.c.attributes,
        select(energy_rollup_state.c.version).where(energy_rollup_state.c.series_id == _OF).scalar_subquery(),
        select(func.count()).select_from(energy_rollup_dirty).where(energy_rollup_dirty.c.series_id == _OF).scalar_subquery(),
        select(func.max(energy_rollup_dirty.c.id)).where(energy_rollup_dirty.c.series_id == _OF).scalar_subquery(),
        select(func.count()).select_from(meter_events).where(meter_events.c.series_id == _OF).scalar_subquery(),
        select(func.max(meter_events.c.id)).where(meter_events.c.series_id == _OF).scalar_subquery(),
        # through the primary key (series_id, ts), backwards: one index entry
        select(readings.c.ts).where(readings.c.series_id == _OF).order_by(readings.c.ts.desc()).limit(1).scalar_subquery(),
        sites.c.country,  # not read by energy reports; the holidays of a forecast (services/forecast_answers.py)
    )
    .select_from(assets.join(sites, sites.c.id == assets.c.site_id).outerjoin(series, series.c.asset_id == assets.c.id))
    .where(assets.c.id == bindparam("asset_id"))
    .order_by(series.c.id)
)
#: Columns of each row of :func:`energy_fingerprint`: the asset's attributes, the series' quantity,
#: kind and interval (seconds or None), the rollup version (None before the series' first rollup),
#: the number of pending change marks, the last reading's time.
ASSET_ATTRIBUTES, QUANTITY, SERIES_KIND, INTERVAL, VERSION, MARKS, LAST_TS = 2, 6, 7, 9, 11, 12, 16


_COMPILED_POSTGRES = _STATEMENT.compile(dialect=postgresql.psycopg.dialect())
#: The statement as psycopg runs it on PostgreSQL, and its fixed parameters (the ``LIMIT 1``): read
#: on the raw connection by :func:`energy_fingerprint` and on the event loop by
#: :mod:`digitaltwin.storage.async_reads`, so both give the same rows (and the same answer keys).
SQL_POSTGRES = _COMPILED_POSTGRES.string
_FIXED_POSTGRES = {name: value for name, value in _COMPILED_POSTGRES.params.items() if name != "asset_id"}


def params_postgres(asset_id: str) -> dict[str, object]:
    """The parameters of :data:`SQL_POSTGRES` for ``asset_id``."""
    return {**_FIXED_POSTGRES, "asset_id": asset_id}


def energy_fingerprint(reads: Engine, asset_id: str) -> list[tuple[Any, ...]]:
    """The stored inputs of ``asset_id``'s energy reports, one row per series (see the module docstring).

    Args:
        reads: an engine for single-statement reads (:func:`digitaltwin.storage.db.read_engine`).

    Returns:
        Rows of plain values (JSON attributes as parsed), ordered by series id; the last reading's
        time (a UTC datetime, or None) is at :data:`LAST_TS`. Empty for an unknown asset; an asset
        without series gives one row whose series columns are None.
    """
    if reads.dialect.name == "postgresql":
        return [tuple(row) for row in fetch_autocommit(reads, SQL_POSTGRES, params_postgres(asset_id))]
    with reads.connect() as conn:
        return [tuple(row) for row in conn.execute(_STATEMENT, {"asset_id": asset_id})]
