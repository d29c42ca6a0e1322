"""Served forecast bodies found with one statement, before any history is read.

The forecast cache (:mod:`digitaltwin.services.forecast_cache`) keys a forecast on the inputs it
reads: the asset, its site, its series, the readings of the history window and the meter rules,
about seven statements and a few hundred readings per request, even when the answer is kept.
On PostgreSQL the API first reads the asset's energy fingerprint
(:mod:`digitaltwin.storage.energy_fingerprint`, one statement on the event loop) and looks up the
body it served last time for the same fingerprint, model and request. The fingerprint changes
with every committed write of the asset's readings (each write leaves a change mark in its own
transaction, and marks only go with a rollup version bump), with its meter set-up and
attributes, and with its site's zone and country; the model is named by its id and artifact
checksums as in the forecast cache. As for kept energy answers, the fingerprint is read before
the forecast is computed, so a body is never kept under the key of data older than it was
computed from.

Only where the fingerprint names every input of the forecast:

* no exogenous columns (``forecast_exog`` reads other assets' readings), and
* the energy comes from intervals or a counter, not power samples: a held power sample reads
  the current time (the forecast cache keys those on it).

Elsewhere, and on SQLite, forecasts go the forecast cache's way only.

The body's ``issued_at`` is the time of each answer: bodies are kept as the text before and
after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson

from digitaltwin.domain.assets import FORECAST_EXOG
from digitaltwin.domain.units import SeriesKind
from digitaltwin.services.energy import ENERGY_QUANTITIES
from digitaltwin.services.forecast_cache import forecast_key
from digitaltwin.storage.energy_fingerprint import ASSET_ATTRIBUTES, QUANTITY, SERIES_KIND

#: What the body holds in place of ``issued_at`` while it is split (a JSON string no other field can hold).
_ISSUED_AT = "\u2063issued_at\u2063"
_ISSUED_AT_JSON = orjson.dumps(_ISSUED_AT)


def forecast_body_key(
    rows: list[tuple[object, ...]], asset_id: str, model: tuple[object, ...], *, horizon: timedelta,
    levels: Sequence[float], max_hold: timedelta,
) -> bytes | None:
    """The key of a forecast body, or None where the fingerprint does not name every input.

    Args:
        rows: the asset's fingerprint rows (read before the forecast is computed).
        model: what names the model (:meth:`ForecastService.served_identity
            <digitaltwin.services.forecasting.ForecastService.served_identity>`).
        horizon, levels: as requested; max_hold: the power hold limit the forecast reads.
    """
    if not rows or FORECAST_EXOG in (rows[0][ASSET_ATTRIBUTES] or {}):  # type: ignore[operator]
        return None
    kinds = {r[QUANTITY]: r[SERIES_KIND] for r in rows}
    energy = next((quantity for quantity in ENERGY_QUANTITIES if quantity in kinds), None)
    if energy is None or kinds[energy] == SeriesKind.INSTANTANEOUS.value:
        return None
    return forecast_key(
        ("forecast-body/1", asset_id, model, horizon.total_seconds(), tuple(float(q) for q in levels),
         max_hold.total_seconds(), *rows)
    )


def split_body(render: object) -> tuple[bytes, bytes]:
    """The body ``render(issued_at)`` gives, as its text before and after ``issued_at``.

    Args:
        render: called with the value to write as ``issued_at``; returns the JSON body (bytes).
    """
    head, tail = render(_ISSUED_AT).split(_ISSUED_AT_JSON, 1)  # type: ignore[operator]
    return head, tail


def join_body(parts: tuple[bytes, bytes], issued_at: datetime) -> bytes:
    """A kept body with ``issued_at`` (UTC) written as the forecast body writes it (RFC 3339, ``Z``)."""
    return parts[0] + orjson.dumps(issued_at, option=orjson.OPT_UTC_Z) + parts[1]
