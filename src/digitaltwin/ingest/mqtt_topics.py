"""MQTT topics of the telemetry contract and the routing of a topic to its asset.

* ``dt/{site_id}/{asset_id}/telemetry``: payload is one telemetry item or an array of them
  (see :func:`digitaltwin.domain.readings.parse_item`).
* ``factory/{line}/{machine_id}/power``: the replaced system's contract,
  ``{"timestamp", "machine_id", "power_kW", "status": "RUN"|"IDLE"|"STOP"}``; ``power_kW`` may be
  left out of a status-only message (see :mod:`digitaltwin.ingest.mqtt_payload` and docs/ingestion.md).

A deployment may put every topic under a prefix (``MQTT_TOPIC_PREFIX``, e.g. ``plant-a/``);
subscriptions are MQTT v5 shared subscriptions (``$share/{group}/...``) so several replicas
split one stream.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from digitaltwin.domain.assets import check_slug
from digitaltwin.domain.errors import ValidationError

TELEMETRY_FILTER = "dt/+/+/telemetry"
FACTORY_FILTER = "factory/+/+/power"


class TopicKind(str, enum.Enum):
    """Which contract a topic follows."""

    TELEMETRY = "telemetry"
    FACTORY_POWER = "factory_power"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message belongs.

    Attributes:
        site_id: the site named by a ``dt/`` topic; None for ``factory/`` topics.
        asset_id: the asset (machine) named by the topic.
        line: the production line of a ``factory/`` topic.
    """

    kind: TopicKind
    asset_id: str
    site_id: str | None = None
    line: str | None = None


def subscriptions(*, prefix: str = "", group: str | None = "digitaltwin") -> list[str]:
    """Topic filters to subscribe to: shared (``$share/{group}/...``) unless ``group`` is None."""
    filters = [f"{prefix}{TELEMETRY_FILTER}", f"{prefix}{FACTORY_FILTER}"]
    return [f"$share/{group}/{f}" for f in filters] if group else filters


#: Routes remembered (a deployment has one topic per asset; a topic outside the contract raises and is not kept).
ROUTE_CACHE_SIZE = 65_536


@functools.lru_cache(maxsize=ROUTE_CACHE_SIZE)
def route(topic: str, *, prefix: str = "") -> Route:
    """The route of ``topic`` (with the deployment's ``prefix``); :class:`Route` is immutable,
    so results are cached (:data:`ROUTE_CACHE_SIZE`).

    Raises:
        ValidationError: naming ``topic`` for a topic outside the contract, or naming
            ``site_id``/``asset_id``/``machine_id`` for a segment that is not a valid id.
    """
    if not topic.startswith(prefix):
        raise ValidationError(f"topic {topic[:200]!r} is outside the prefix {prefix!r}", field="topic")
    parts = topic[len(prefix) :].split("/")
    if len(parts) == 4 and parts[0] == "dt" and parts[3] == "telemetry":
        site_id = check_slug(parts[1], field="site_id")
        return Route(TopicKind.TELEMETRY, check_slug(parts[2], field="asset_id"), site_id=site_id)
    if len(parts) == 4 and parts[0] == "factory" and parts[3] == "power":
        line = check_slug(parts[1], field="line")
        return Route(TopicKind.FACTORY_POWER, check_slug(parts[2], field="machine_id"), line=line)
    raise ValidationError(
        f"topic {topic[:200]!r} is neither dt/{{site_id}}/{{asset_id}}/telemetry nor factory/{{line}}/{{machine_id}}/power",
        field="topic",
    )
