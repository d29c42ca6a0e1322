"""The one place that reads and writes tables.

Services and the API call :class:`Repository`; nothing else touches tables.
Writes of readings are idempotent on the ``(series_id, ts)`` key, first write
wins, and a key stored with another value is reported as a conflict
(:mod:`digitaltwin.storage.batch_write`: binary ``COPY`` on PostgreSQL).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import BigInteger, Engine, and_, bindparam, cast, func, or_, select, text, type_coerce, union_all
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from digitaltwin.domain.assets import Asset, AssetKind, Site, check_no_nul
from digitaltwin.domain.dead_letters import DeadLetter
from digitaltwin.domain.errors import ConflictError, NotFoundError, ValidationError
from digitaltwin.domain.readings import Reading
from digitaltwin.domain.units import SeriesKind, quantity_spec
from digitaltwin.storage.batch_write import WriteOutcome, series_arrays_postgres, stream_new_readings, write_arrays
from digitaltwin.storage.db import fetch_autocommit, read_engine
from digitaltwin.storage.rollups import mark_changed
from digitaltwin.storage.tables import (
    assets,
    dead_letters,
    from_epoch_us,
    machine_status,
    readings,
    series,
    sites,
    to_epoch_us,
)


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A stored series: one quantity of one asset.

    Attributes:
        interval_seconds: length of each interval for ``interval`` series, when known.
        attributes: what the series declares (see :mod:`digitaltwin.domain.series_attributes`).
    """

    id: int
    asset_id: str
    quantity: str
    kind: SeriesKind
    unit: str
    interval_seconds: int | None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)


class ReadingRow(NamedTuple):
    """One reading as returned by queries (value in the series' canonical unit).

    A named tuple rather than a frozen dataclass: a page builds one per row, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) was 5 % of a readings request.
    """

    ts: datetime
    quantity: str
    unit: str
    value: float


@dataclass(frozen=True, slots=True)
class ReadingPage:
    """A page of raw readings, oldest first, and the cursor of the next page (None at the end)."""

    rows: list[ReadingRow]
    next_cursor: str | None


def _encode_cursor(ts: datetime, series_id: int) -> str:
    return base64.urlsafe_b64encode(f"{to_epoch_us(ts)}:{series_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts_us, sid = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
        series_id = int(sid)
        if not 0 < series_id < 2**31:
            raise ValueError(sid)
        return from_epoch_us(int(ts_us)), series_id
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise ValidationError("invalid cursor; pass next_cursor of the previous page unchanged", field="cursor") from None


def _site(row: Any) -> Site:
    return Site(id=row.id, name=row.name, timezone=row.timezone, country=row.country, attributes=dict(row.attributes or {}))


def _asset(row: Any) -> Asset:
    return Asset(
        id=row.id,
        site_id=row.site_id,
        name=row.name,
        kind=AssetKind(row.kind),
        parent_id=row.parent_id,
        rated_power_kw=row.rated_power_kw,
        attributes=dict(row.attributes or {}),
    )


def _series(row: Any) -> SeriesInfo:
    return SeriesInfo(
        id=row.id,
        asset_id=row.asset_id,
        quantity=row.quantity,
        kind=SeriesKind(row.kind),
        unit=row.unit,
        interval_seconds=row.interval_seconds,
        attributes=dict(row.attributes or {}),
    )


#: INSERT constructs with ``ON CONFLICT`` of the two supported databases.
_INSERT_BY_DIALECT = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}

#: Latest readings whose median spacing stands for the interval of a series without a recorded one.
SPACING_READINGS = 48

# Reads on the request path of forecasts and energy queries, built once: SQLAlchemy reuses a
# statement's compiled form without computing its cache key on every call.
_GET_SITE = select(sites).where(sites.c.id == bindparam("site_id"))
_GET_ASSET = select(assets).where(assets.c.id == bindparam("asset_id"))
# read_page: the asset (one row with null series columns when it has none) and its series, in one query.
_ASSET_SERIES = (
    select(assets.c.id.label("asset"), series.c.id, series.c.quantity, series.c.unit)
    .select_from(assets.outerjoin(series, series.c.asset_id == assets.c.id))
    .where(assets.c.id == bindparam("asset_id"))
    .order_by(series.c.quantity)
)


# latest: the asset (a row of nulls without series), each series and its newest reading (nulls without
# any), in one query; the newest reading is found through the primary key (series_id, ts).
_NEWEST = readings.alias("newest")
_ASSET_LATEST = (
    select(assets.c.id.label("asset"), series.c.quantity, series.c.unit, readings.c.ts, readings.c.value)
    .select_from(
        assets.outerjoin(series, series.c.asset_id == assets.c.id).outerjoin(
            readings,
            and_(
                readings.c.series_id == series.c.id,
                readings.c.ts == select(func.max(_NEWEST.c.ts)).where(_NEWEST.c.series_id == series.c.id).scalar_subquery(),
            ),
        )
    )
    .where(assets.c.id == bindparam("asset_id"))
    .order_by(series.c.quantity)
)


def _page_query(with_start: bool, with_end: bool, with_after: bool) -> Any:
    """read_page's statement for the bounds given (built once each: building costs more than running it)."""
    query = select(readings.c.series_id, readings.c.ts, readings.c.value).where(
        readings.c.series_id.in_(bindparam("series_ids", expanding=True))
    )
    if with_start:
        query = query.where(readings.c.ts >= bindparam("start"))
    if with_end:
        query = query.where(readings.c.ts < bindparam("end"))
    if with_after:
        after_ts, after_sid = bindparam("after_ts"), bindparam("after_sid")
        query = query.where(or_(readings.c.ts > after_ts, and_(readings.c.ts == after_ts, readings.c.series_id > after_sid)))
    return query.order_by(readings.c.ts, readings.c.series_id).limit(bindparam("rows"))


_PAGE_QUERIES = {(a, b, c): _page_query(a, b, c) for a in (False, True) for b in (False, True) for c in (False, True)}


def _page_sql_postgres(with_quantity: bool, with_start: bool, with_end: bool, with_after: bool) -> str:
    """read_page on PostgreSQL in one statement: the asset, its series and, per series (LATERAL),
    its first ``rows`` readings in range through the primary key, then the first ``rows`` of all.

    Only the bounds given are in the text, so the prepared statement's plan keeps them as index
    conditions. A known asset always yields a row (series and reading columns null when it has none).
    """
    inner = ["series_id = s.id"]
    if with_start:
        inner.append("ts >= %(start)s")
    if with_end:
        inner.append("ts < %(end)s")
    if with_after:
        inner.append("(ts > %(after_ts)s OR (ts = %(after_ts)s AND s.id > %(after_sid)s))")
    quantity = " AND s.quantity = %(quantity)s" if with_quantity else ""
    return (
        "SELECT s.id, s.quantity, s.unit, r.ts, r.value FROM assets a"
        f" LEFT JOIN series s ON s.asset_id = a.id{quantity}"
        " LEFT JOIN LATERAL (SELECT ts, value FROM readings"
        f" WHERE {' AND '.join(inner)} ORDER BY ts LIMIT %(rows)s) r ON true"
        " WHERE a.id = %(asset_id)s ORDER BY r.ts, s.id LIMIT %(rows)s"
    )


_PAGE_SQL_POSTGRES = {
    key: _page_sql_postgres(*key) for key in ((a, b, c, d) for a in (False, True) for b in (False, True) for c in (False, True) for d in (False, True))
}
def page_statement_postgres(
    asset_id: str, start: datetime | None, end: datetime | None, quantity: str | None, limit: int,
    after: tuple[datetime, int] | None,
) -> tuple[str, dict[str, object]]:
    """The one statement of :meth:`Repository.read_page` on PostgreSQL and its parameters (psycopg's
    ``%(name)s`` style): ``limit + 1`` rows are asked for, to tell whether another page follows.
    ``after`` is a decoded cursor (last time, last series id)."""
    sql = _PAGE_SQL_POSTGRES[(quantity is not None, start is not None, end is not None, after is not None)]
    params: dict[str, object] = {"asset_id": asset_id, "quantity": quantity, "rows": limit + 1}
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            params[name] = value.astimezone(UTC)
    if after is not None:
        params["after_ts"], params["after_sid"] = after[0].astimezone(UTC), after[1]
    return sql, params


def page_from_rows_postgres(fetched: list[tuple[Any, ...]], asset_id: str, limit: int, asset_must_exist: bool) -> ReadingPage:
    """The page of :func:`page_statement_postgres`'s rows ``(series id, quantity, unit, time, value)``.

    Raises:
        NotFoundError: naming ``asset_id`` when no row came back (the asset is unknown) and
            ``asset_must_exist``.
    """
    if not fetched and asset_must_exist:
        raise NotFoundError(f"asset {asset_id!r} not found", field="asset_id")
    fetched = [r for r in fetched if r[3] is not None]
    more = len(fetched) > limit
    fetched = fetched[:limit]
    if fetched and fetched[0][3].tzinfo is not UTC:  # a session not in UTC (engines not from make_engine)
        fetched = [(sid, q, unit, ts.astimezone(UTC), value) for sid, q, unit, ts, value in fetched]
    rows = [ReadingRow(ts, q, unit, value) for _, q, unit, ts, value in fetched]
    next_cursor = _encode_cursor(rows[-1].ts, fetched[-1][0]) if more else None
    return ReadingPage(rows, next_cursor)


_OF_SERIES = readings.c.series_id == bindparam("series_id")
_PREVIOUS_READING = (
    select(readings.c.ts, readings.c.value).where(_OF_SERIES, readings.c.ts < bindparam("ts")).order_by(readings.c.ts.desc()).limit(1)
)
_NEXT_READING = select(readings.c.ts, readings.c.value).where(_OF_SERIES, readings.c.ts >= bindparam("ts")).order_by(readings.c.ts).limit(1)
_FIRST_TS = select(readings.c.ts).where(_OF_SERIES).order_by(readings.c.ts.asc()).limit(1)
_LAST_TS = select(readings.c.ts).where(_OF_SERIES).order_by(readings.c.ts.desc()).limit(1)
# series_arrays: epoch microseconds as integers, stored as such on SQLite, computed on PostgreSQL.
_EPOCH_US = {
    "sqlite": type_coerce(readings.c.ts, BigInteger),
    "postgresql": cast(func.extract("epoch", readings.c.ts) * 1_000_000, BigInteger),
}
_SERIES_ARRAYS = {
    dialect: select(epoch_us, readings.c.value)
    .where(_OF_SERIES, readings.c.ts >= bindparam("start"), readings.c.ts < bindparam("end"))
    .order_by(readings.c.ts)
    for dialect, epoch_us in _EPOCH_US.items()
}
#: Context subqueries per statement of :meth:`Repository.readings_with_context` (SQLite allows 500
#: terms in one compound select).
_CONTEXT_TERMS = 200


@dataclass(frozen=True, slots=True)
class ReadingSpan:
    """What :meth:`Repository.readings_with_context` reads of one series: its readings in
    ``[start, end)``, the last ``before`` readings before ``start`` and the first ``after`` at or after ``end``."""

    series_id: int
    start: datetime
    end: datetime
    before: int = 1
    after: int = 0


class Repository:
    """Data access for sites, assets, series and readings.

    Args:
        engine: a SQLAlchemy engine on SQLite or PostgreSQL, migrated to head.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: for the read-only ``connect()`` blocks below (no BEGIN/ROLLBACK round trips, see read_engine)
        self.reads = read_engine(engine)
        self._series_cache: dict[tuple[str, str], SeriesInfo] = {}

    # -- sites ---------------------------------------------------------------
    def create_site(self, site: Site, *, exist_ok: bool = False) -> Site:
        """Insert ``site``; with ``exist_ok`` an existing id is updated instead.

        Raises:
            ConflictError: the id exists and ``exist_ok`` is false.
            ValidationError: a text field holds a NUL character (:func:`check_no_nul`).
        """
        check_no_nul(site)
        values = {"id": site.id, "name": site.name, "timezone": site.timezone, "country": site.country, "attributes": site.attributes}
        with self.engine.begin() as conn:
            exists = conn.execute(select(sites.c.id).where(sites.c.id == site.id)).first()
            if exists and not exist_ok:
                raise ConflictError(f"site {site.id!r} exists", field="id")
            if exists:
                conn.execute(sites.update().where(sites.c.id == site.id).values(**values))
            else:
                try:
                    conn.execute(sites.insert().values(**values, created_at=datetime.now(UTC)))
                except IntegrityError:
                    raise ConflictError(f"site {site.id!r} exists", field="id") from None
        return site

    def get_site(self, site_id: str, *, field: str = "site_id") -> Site:
        """Raises NotFoundError naming ``field``."""
        with self.reads.connect() as conn:
            row = conn.execute(_GET_SITE, {"site_id": site_id}).first()
        if row is None:
            raise NotFoundError(f"site {site_id!r} not found", field=field)
        return _site(row)

    def list_sites(self) -> list[Site]:
        with self.reads.connect() as conn:
            return [_site(r) for r in conn.execute(select(sites).order_by(sites.c.id))]

    # -- assets --------------------------------------------------------------
    def create_asset(self, asset: Asset, *, exist_ok: bool = False) -> Asset:
        """Insert ``asset``; with ``exist_ok`` an existing id is updated instead.

        Raises:
            NotFoundError: its site or parent does not exist.
            ConflictError: the id exists and ``exist_ok`` is false.
            ValidationError: a text field holds a NUL character (:func:`check_no_nul`).
        """
        check_no_nul(asset)
        self.get_site(asset.site_id)
        self._check_parent(asset)
        values = {
            "id": asset.id,
            "site_id": asset.site_id,
            "name": asset.name,
            "kind": asset.kind.value,
            "parent_id": asset.parent_id,
            "rated_power_kw": asset.rated_power_kw,
            "attributes": asset.attributes,
        }
        with self.engine.begin() as conn:
            exists = conn.execute(select(assets.c.id).where(assets.c.id == asset.id)).first()
            if exists and not exist_ok:
                raise ConflictError(f"asset {asset.id!r} exists", field="id")
            if exists:
                conn.execute(assets.update().where(assets.c.id == asset.id).values(**values))
            else:
                try:
                    conn.execute(assets.insert().values(**values, created_at=datetime.now(UTC)))
                except IntegrityError:
                    raise ConflictError(f"asset {asset.id!r} exists", field="id") from None
        return asset

    def _check_parent(self, asset: Asset) -> None:
        """Refuse a parent that is missing, on another site, or that would close a cycle.

        Walks up from the new parent: an asset hierarchy is a forest, so reaching
        ``asset`` itself means the update would make it its own ancestor.

        Raises:
            NotFoundError: naming ``parent_id`` when the parent does not exist.
            ValidationError: naming ``parent_id`` for another site's parent or a cycle.
        """
        if asset.parent_id is None:
            return
        if asset.parent_id == asset.id:
            raise ValidationError("an asset cannot be its own parent", field="parent_id")
        parent = self.get_asset(asset.parent_id, field="parent_id")
        if parent.site_id != asset.site_id:
            raise ValidationError(f"parent {parent.id!r} belongs to site {parent.site_id!r}", field="parent_id")
        seen = {asset.id}
        ancestor: Asset | None = parent
        while ancestor is not None and ancestor.parent_id is not None:
            if ancestor.parent_id in seen:
                raise ValidationError(
                    f"parent {parent.id!r} would make {asset.id!r} its own ancestor (via {ancestor.id!r})", field="parent_id"
                )
            seen.add(ancestor.id)
            ancestor = self.get_asset(ancestor.parent_id, field="parent_id")

    def update_site(self, site: Site) -> Site:
        """Replace the name, timezone, country and attributes of an existing site.

        Stored readings are UTC, so a new timezone changes only how later queries
        cut days and months; nothing stored is rewritten.

        Raises:
            NotFoundError: naming ``site_id`` when the site does not exist.
            ValidationError: a text field holds a NUL character (:func:`check_no_nul`).
        """
        check_no_nul(site)
        self.get_site(site.id)
        with self.engine.begin() as conn:
            conn.execute(
                sites.update()
                .where(sites.c.id == site.id)
                .values(name=site.name, timezone=site.timezone, country=site.country, attributes=site.attributes)
            )
        return site

    def update_asset(self, asset: Asset) -> Asset:
        """Replace the registration of an existing asset (its site cannot change).

        Raises:
            NotFoundError: naming ``asset_id`` (unknown asset) or ``parent_id``.
            ValidationError: naming ``site_id`` when it differs from the stored one,
                or ``parent_id`` for another site's parent or a cycle, or any field
                holding a NUL character (:func:`check_no_nul`).
        """
        check_no_nul(asset)
        current = self.get_asset(asset.id)
        if current.site_id != asset.site_id:
            raise ValidationError("an asset cannot move to another site; register a new asset", field="site_id")
        self._check_parent(asset)
        with self.engine.begin() as conn:
            conn.execute(
                assets.update()
                .where(assets.c.id == asset.id)
                .values(
                    name=asset.name,
                    kind=asset.kind.value,
                    parent_id=asset.parent_id,
                    rated_power_kw=asset.rated_power_kw,
                    attributes=asset.attributes,
                )
            )
        return asset

    def get_asset(self, asset_id: str, *, field: str = "asset_id") -> Asset:
        """Raises NotFoundError naming ``field``."""
        with self.reads.connect() as conn:
            row = conn.execute(_GET_ASSET, {"asset_id": asset_id}).first()
        if row is None:
            raise NotFoundError(f"asset {asset_id!r} not found", field=field)
        return _asset(row)

    def get_assets(self, asset_ids: Iterable[str]) -> dict[str, Asset]:
        """The existing assets among ``asset_ids``, by id, in one query (unknown ids are left out)."""
        wanted = sorted(set(asset_ids))
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return {r.id: _asset(r) for r in conn.execute(select(assets).where(assets.c.id.in_(wanted)))}

    def get_sites(self, site_ids: Iterable[str]) -> dict[str, Site]:
        """The existing sites among ``site_ids``, by id, in one query (unknown ids are left out)."""
        wanted = sorted(set(site_ids))
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return {r.id: _site(r) for r in conn.execute(select(sites).where(sites.c.id.in_(wanted)))}

    def list_assets(self, *, site_id: str | None = None, kind: AssetKind | None = None) -> list[Asset]:
        query = select(assets).order_by(assets.c.id)
        if site_id is not None:
            query = query.where(assets.c.site_id == site_id)
        if kind is not None:
            query = query.where(assets.c.kind == kind.value)
        with self.reads.connect() as conn:
            return [_asset(r) for r in conn.execute(query)]

    def known_asset_ids(self, asset_ids: Iterable[str]) -> set[str]:
        """The subset of ``asset_ids`` that exist."""
        wanted = sorted(set(asset_ids))
        if not wanted:
            return set()
        with self.reads.connect() as conn:
            return {r.id for r in conn.execute(select(assets.c.id).where(assets.c.id.in_(wanted)))}

    # -- series --------------------------------------------------------------
    def list_series(self, asset_id: str) -> list[SeriesInfo]:
        with self.reads.connect() as conn:
            rows = conn.execute(select(series).where(series.c.asset_id == asset_id).order_by(series.c.quantity))
            return [_series(r) for r in rows]

    def find_series(self, asset_id: str, quantity: str, *, fresh: bool = False) -> SeriesInfo | None:
        """The series of ``quantity`` on ``asset_id``, or None if nothing was ever stored.

        Series are cached per repository; ``fresh`` reads the row again (another process may
        have recorded or cleared its ``interval_seconds`` since) and refreshes the cache.
        """
        key = (asset_id, quantity)
        if fresh:
            self._series_cache.pop(key, None)
        if key in self._series_cache:
            return self._series_cache[key]
        with self.reads.connect() as conn:
            row = conn.execute(
                select(series).where(series.c.asset_id == asset_id, series.c.quantity == quantity)
            ).first()
        if row is None:
            return None
        info = self._series_cache[key] = _series(row)
        return info

    def ensure_series(self, asset_id: str, quantity: str, *, interval_seconds: int | None = None) -> SeriesInfo:
        """Get or create the series of ``quantity`` on ``asset_id``.

        ``interval_seconds`` is recorded for new interval series, and fills in a
        series that did not know its interval yet.
        """
        found = self.find_series(asset_id, quantity)
        if found is not None and (interval_seconds is None or found.interval_seconds is not None):
            return found
        spec = quantity_spec(quantity)
        if found is None:
            # One statement that creates the series and returns its row: a series created
            # concurrently (the unique asset/quantity pair) returns nothing and is read below.
            insert = _INSERT_BY_DIALECT[self.engine.dialect.name](series).values(
                asset_id=asset_id,
                quantity=quantity,
                kind=spec.kind.value,
                unit=spec.canonical_unit,
                interval_seconds=interval_seconds,
            )
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(
                        insert.on_conflict_do_nothing(index_elements=[series.c.asset_id, series.c.quantity]).returning(*series.c)
                    ).first()
            except IntegrityError:
                row = None  # the asset is missing: reported by the assertion below, as before
            if row is not None:
                info = self._series_cache[(asset_id, quantity)] = _series(row)
                return info
        else:  # only fills in a missing interval: one recorded meanwhile by another process is kept
            with self.engine.begin() as conn:
                conn.execute(
                    series.update()
                    .where(series.c.id == found.id, series.c.interval_seconds.is_(None))
                    .values(interval_seconds=interval_seconds)
                )
        self._series_cache.pop((asset_id, quantity), None)
        info = self.find_series(asset_id, quantity)
        assert info is not None
        return info

    def set_series_attributes(self, asset_id: str, quantity: str, attributes: dict[str, Any]) -> SeriesInfo:
        """Replace the declared attributes of a series (created, empty, if it has no reading yet)."""
        info = self.ensure_series(asset_id, quantity)
        with self.engine.begin() as conn:
            conn.execute(series.update().where(series.c.id == info.id).values(attributes=attributes))
        found = self.find_series(asset_id, quantity, fresh=True)
        assert found is not None
        return found

    # -- readings ------------------------------------------------------------
    def write_readings(self, batch: Sequence[Reading], *, interval_seconds: int | None = None) -> int:
        """Store readings idempotently in one transaction; returns how many were new.

        First write wins: a reading whose key is stored is skipped (see :meth:`store_readings`
        for what was skipped and why).
        """
        return self.store_readings(batch, interval_seconds=interval_seconds).stored

    def store_readings(
        self, batch: Sequence[Reading], *, interval_seconds: int | None = None, replace: bool = False
    ) -> WriteOutcome:
        """Store readings in one transaction, telling new ones, true duplicates and conflicts apart.

        Args:
            batch: readings of existing assets, values in canonical units.
            interval_seconds: interval length recorded on new ``interval`` series.
            replace: a stored reading with another value is overwritten (default: kept).

        Returns:
            A :class:`~digitaltwin.storage.batch_write.WriteOutcome` whose conflict positions
            index ``batch`` (see :mod:`digitaltwin.storage.batch_write`).
        """
        if not batch:
            return WriteOutcome(replaced=replace)
        ids: dict[tuple[str, str], int] = {}
        sids = np.empty(len(batch), dtype=np.int64)
        for i, r in enumerate(batch):
            key = (r.asset_id, r.quantity)
            sid = ids.get(key)
            if sid is None:
                spec = quantity_spec(r.quantity)
                interval = interval_seconds if spec.kind is SeriesKind.INTERVAL else None
                sid = ids[key] = self.ensure_series(r.asset_id, r.quantity, interval_seconds=interval).id
            sids[i] = sid
        ts_us = np.fromiter((to_epoch_us(r.ts) for r in batch), dtype=np.int64, count=len(batch))
        values = np.fromiter((r.value for r in batch), dtype=np.float64, count=len(batch))
        return write_arrays(self.engine, sids, ts_us, values, replace=replace)

    def store_arrays(self, sids: np.ndarray, ts_us: np.ndarray, values: np.ndarray, *, replace: bool = False) -> WriteOutcome:
        """:meth:`store_readings` for a batch already in arrays: series ids (from
        :meth:`ensure_series`), Unix epoch microseconds (int64) and canonical values (float64);
        what bulk import uses, with no object per row."""
        return write_arrays(self.engine, sids, ts_us, values, replace=replace)

    def stream_new_readings(
        self,
        chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
        confirm: Callable[[np.ndarray, np.ndarray, np.ndarray], bool],
    ) -> WriteOutcome | None:
        """:meth:`store_arrays` of one batch of new readings given in chunks as they are produced,
        on PostgreSQL (:func:`~digitaltwin.storage.batch_write.stream_new_readings`): None, with
        nothing stored, unless every reading was new and ``confirm`` accepted the whole batch."""
        return stream_new_readings(self.engine, chunks, confirm)

    def read_page(
        self,
        asset_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        quantity: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
        asset_must_exist: bool = False,
    ) -> ReadingPage:
        """Raw readings of an asset in ``[start, end)``, oldest first, ``limit`` per page.

        One connection for the asset's series and the page. ``asset_must_exist``: raise
        NotFoundError naming ``asset_id`` for an unknown asset (else its page is empty).
        """
        after = decode_cursor(cursor) if cursor is not None else None
        if self.engine.dialect.name == "postgresql":
            return self._read_page_postgres(asset_id, start, end, quantity, limit, after, asset_must_exist)
        return self._read_page_generic(asset_id, start, end, quantity, limit, after, asset_must_exist)

    def _read_page_generic(
        self, asset_id: str, start: datetime | None, end: datetime | None, quantity: str | None, limit: int,
        after: tuple[datetime, int] | None, asset_must_exist: bool,
    ) -> ReadingPage:
        """:meth:`read_page` in two statements on one connection (any database)."""
        with self.reads.connect() as conn:
            found = conn.execute(_ASSET_SERIES, {"asset_id": asset_id}).all()
            if not found and asset_must_exist:
                raise NotFoundError(f"asset {asset_id!r} not found", field="asset_id")
            infos = {
                r.id: (r.quantity, r.unit) for r in found if r.id is not None and (quantity is None or r.quantity == quantity)
            }
            if not infos:
                return ReadingPage([], None)
            query = _PAGE_QUERIES[(start is not None, end is not None, after is not None)]
            params: dict[str, object] = {"series_ids": list(infos), "start": start, "end": end, "rows": limit + 1}
            if after is not None:
                params["after_ts"], params["after_sid"] = after
            fetched = conn.execute(query, params).all()
        more = len(fetched) > limit
        fetched = fetched[:limit]
        rows = [ReadingRow(ts, *infos[sid], value) for sid, ts, value in fetched]
        next_cursor = _encode_cursor(fetched[-1].ts, fetched[-1].series_id) if more else None
        return ReadingPage(rows, next_cursor)

    def _read_page_postgres(
        self, asset_id: str, start: datetime | None, end: datetime | None, quantity: str | None, limit: int,
        after: tuple[datetime, int] | None, asset_must_exist: bool,
    ) -> ReadingPage:
        """:meth:`read_page` in one round trip (:func:`page_statement_postgres`), rows read by psycopg directly."""
        sql, params = page_statement_postgres(asset_id, start, end, quantity, limit, after)
        return page_from_rows_postgres(fetch_autocommit(self.engine, sql, params), asset_id, limit, asset_must_exist)

    def delete_readings(
        self, asset_id: str, *, start: datetime, end: datetime, quantity: str | None = None
    ) -> int:
        """Delete an asset's readings in ``[start, end)`` (all quantities, or one); returns how many.

        A series left without any reading forgets its recorded ``interval_seconds``, so the
        next declaration (or the spacing of resent readings) sets it again: deleting all of a
        series' readings is how a wrongly recorded interval is corrected (docs/ingestion.md).
        """
        ids = [s.id for s in self.list_series(asset_id) if quantity is None or s.quantity == quantity]
        if not ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                readings.delete().where(readings.c.series_id.in_(ids), readings.c.ts >= start, readings.c.ts < end)
            )
            mark_changed(conn, [(sid, start, end) for sid in ids])
            emptied = ~select(readings.c.series_id).where(readings.c.series_id == series.c.id).exists()
            conn.execute(
                series.update()
                .where(series.c.id.in_(ids), series.c.interval_seconds.is_not(None), emptied)
                .values(interval_seconds=None)
            )
        for info in self.list_series(asset_id):
            self._series_cache.pop((asset_id, info.quantity), None)
        return int(result.rowcount)

    def recent_spacing_seconds(self, series_id: int, *, readings_count: int = SPACING_READINGS) -> float | None:
        """Median spacing (seconds) of the latest ``readings_count`` readings of a series; None with fewer than two.

        The rule :func:`digitaltwin.analytics.energy.interval_segments` uses to infer the
        interval of a series that has none recorded; one index range scan of
        ``readings_count`` rows.
        """
        query = (
            select(readings.c.ts)
            .where(readings.c.series_id == series_id)
            .order_by(readings.c.ts.desc())
            .limit(readings_count)
        )
        with self.reads.connect() as conn:
            stamps = [r.ts for r in conn.execute(query)]
        if len(stamps) < 2:
            return None
        seconds = np.array([ts.timestamp() for ts in reversed(stamps)], dtype=np.float64)
        return float(np.median(np.diff(seconds)))

    def series_arrays(self, series_id: int, *, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Readings of one series in ``[start, end)`` as (epoch seconds float64, values float64), sorted.

        No ``datetime`` is built per row: SQLite returns the stored epoch microseconds, PostgreSQL
        streams the rows in its binary ``COPY`` format, read whole by numpy
        (:func:`~digitaltwin.storage.batch_write.series_arrays_postgres`); seconds are
        ``us / 1e6``, the same float as ``datetime.timestamp()``.
        """
        if self.engine.dialect.name == "postgresql":
            return series_arrays_postgres(self.engine, series_id, start, end)
        query = _SERIES_ARRAYS[self.engine.dialect.name]
        with self.reads.connect() as conn:
            fetched = conn.execute(query, {"series_id": series_id, "start": start, "end": end}).all()
        ts = np.fromiter((r[0] for r in fetched), dtype=np.int64, count=len(fetched)) / 1e6
        values = np.fromiter((r[1] for r in fetched), dtype=np.float64, count=len(fetched))
        return ts, values

    def previous_reading(self, series_id: int, before: datetime) -> tuple[datetime, float] | None:
        """The last reading of a series strictly before ``before``, if any."""
        with self.reads.connect() as conn:
            row = conn.execute(_PREVIOUS_READING, {"series_id": series_id, "ts": before}).first()
        return (row.ts, row.value) if row else None

    def next_reading(self, series_id: int, at_or_after: datetime) -> tuple[datetime, float] | None:
        """The first reading of a series at or after ``at_or_after``, if any."""
        with self.reads.connect() as conn:
            row = conn.execute(_NEXT_READING, {"series_id": series_id, "ts": at_or_after}).first()
        return (row.ts, row.value) if row else None

    def readings_around(
        self, series_id: int, *, before: datetime, at_or_after: datetime, count: int
    ) -> tuple[list[tuple[datetime, float]], list[tuple[datetime, float]]]:
        """The last ``count`` readings strictly before ``before`` and the first ``count`` at or after
        ``at_or_after``, each list oldest first (the context counter rules look at around a range)."""
        of = readings.c.series_id == series_id
        head = select(readings.c.ts, readings.c.value).where(of, readings.c.ts < before).order_by(readings.c.ts.desc()).limit(count)
        tail = select(readings.c.ts, readings.c.value).where(of, readings.c.ts >= at_or_after).order_by(readings.c.ts).limit(count)
        with self.reads.connect() as conn:
            earlier = [(r.ts, r.value) for r in conn.execute(head)]
            later = [(r.ts, r.value) for r in conn.execute(tail)]
        return earlier[::-1], later

    def readings_with_context(self, spans: Sequence[ReadingSpan]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The readings of many series at once, as :func:`~digitaltwin.services.energy.read_window` reads
        one (:meth:`series_arrays` of the span and the readings of :meth:`readings_around` on each
        side), in a few statements whatever the number of series: one for the spans (series ids
        and the smallest range covering them, cut per series here), and one per
        :data:`_CONTEXT_TERMS` context reads.

        Returns:
            Series id -> (epoch seconds float64, values float64), sorted by time (a series without
            any reading maps to empty arrays). One span per series.

        Raises:
            ValueError: two spans of one series.
        """
        if len({sp.series_id for sp in spans}) != len(spans):
            raise ValueError("one span per series")
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if not spans:
            return out
        epoch_us = _EPOCH_US[self.engine.dialect.name]
        ids = sorted(sp.series_id for sp in spans)
        lo, hi = min(sp.start for sp in spans), max(sp.end for sp in spans)
        inside = (
            select(readings.c.series_id, epoch_us, readings.c.value)
            .where(readings.c.series_id.in_(ids), readings.c.ts >= lo, readings.c.ts < hi)
            .order_by(readings.c.series_id, readings.c.ts)
        )
        terms = []
        previous: dict[datetime, list[int]] = {}  # spans reading the one reading before their start, by start
        for sp in spans:
            of = readings.c.series_id == sp.series_id
            if sp.before == 1:
                previous.setdefault(sp.start, []).append(sp.series_id)
            elif sp.before > 0:
                terms.append(select(readings.c.series_id, epoch_us.label("us"), readings.c.value)
                             .where(of, readings.c.ts < sp.start).order_by(readings.c.ts.desc()).limit(sp.before).subquery().select())
            if sp.after > 0:
                terms.append(select(readings.c.series_id, epoch_us.label("us"), readings.c.value)
                             .where(of, readings.c.ts >= sp.end).order_by(readings.c.ts).limit(sp.after).subquery().select())
        bounds = {sp.series_id: (to_epoch_us(sp.start), to_epoch_us(sp.end)) for sp in spans}
        by_series: dict[int, list[tuple[int, float]]] = {sid: [] for sid in ids}
        with self.engine.connect() as conn:
            for sid, us, value in conn.execute(inside):
                start_us, end_us = bounds[sid]
                if start_us <= us < end_us:  # the common range is wider than this series' span
                    by_series[sid].append((int(us), float(value)))
            for i in range(0, len(terms), _CONTEXT_TERMS):
                part = terms[i : i + _CONTEXT_TERMS]
                for sid, us, value in conn.execute(part[0] if len(part) == 1 else union_all(*part)):
                    by_series[sid].append((int(us), float(value)))
            for start, sids in previous.items():
                for sid, us, value in conn.execute(self._previous_readings(sids, start)):
                    by_series[sid].append((int(us), float(value)))
        for sid, items in by_series.items():
            items.sort()
            out[sid] = (np.array([us for us, _ in items], dtype=np.int64) / 1e6, np.array([v for _, v in items], dtype=np.float64))
        return out

    def _previous_readings(self, series_ids: list[int], before: datetime) -> Any:
        """The last reading before ``before`` of each series, one statement of one shape: a
        correlated ``max(ts)`` per series (an index seek each) joined back to its reading."""
        inner = readings.alias("earlier")
        last = (
            select(series.c.id.label("sid"),
                   select(func.max(inner.c.ts)).where(inner.c.series_id == series.c.id, inner.c.ts < before).scalar_subquery().label("ts"))
            .where(series.c.id.in_(series_ids))
            .subquery()
        )
        epoch_us = _EPOCH_US[self.engine.dialect.name]
        return select(readings.c.series_id, epoch_us, readings.c.value).join_from(
            readings, last, and_(readings.c.series_id == last.c.sid, readings.c.ts == last.c.ts))

    def series_extent(self, series_id: int) -> tuple[datetime, datetime] | None:
        """(first ts, last ts) of a series, or None when empty; two index seeks, no scan."""
        with self.reads.connect() as conn:
            edges = [conn.execute(query, {"series_id": series_id}).scalar() for query in (_FIRST_TS, _LAST_TS)]
        if edges[0] is None:
            return None
        return edges[0], edges[1]

    def latest(self, asset_id: str, *, asset_must_exist: bool = False) -> list[ReadingRow]:
        """The latest reading (by timestamp) of each series of an asset, by quantity (one query).

        ``asset_must_exist``: raise NotFoundError naming ``asset_id`` for an unknown asset (else ``[]``).
        """
        with self.reads.connect() as conn:
            found = conn.execute(_ASSET_LATEST, {"asset_id": asset_id}).all()
        if not found and asset_must_exist:
            raise NotFoundError(f"asset {asset_id!r} not found", field="asset_id")
        return [ReadingRow(r.ts, r.quantity, r.unit, r.value) for r in found if r.ts is not None]

    # -- MQTT ingestion ---------------------------------------------
    def asset_sites(self, asset_ids: Iterable[str]) -> dict[str, str]:
        """Site id of each existing asset among ``asset_ids`` (missing ones are left out)."""
        wanted = sorted(set(asset_ids))
        if not wanted:
            return {}
        with self.reads.connect() as conn:
            rows = conn.execute(select(assets.c.id, assets.c.site_id).where(assets.c.id.in_(wanted)))
            return {r.id: r.site_id for r in rows}

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Store rejected telemetry (one row per letter, in one transaction); returns the count.

        Any payload can be stored: PostgreSQL text cannot hold NUL (U+0000), so in every text
        column (topic, payload, field, reason) each NUL is replaced by :data:`NUL_STAND_IN`
        (U+2400, the visible "symbol for null"), on SQLite too so both backends keep the same
        text. The payload is already the UTF-8 decoding of the first 1 KiB, invalid bytes shown
        as U+FFFD (:func:`~digitaltwin.domain.dead_letters.truncate_payload`); ``payload_bytes``
        keeps the true size.
        """
        if not letters:
            return 0
        rows = [
            {
                "received_at": d.received_at,
                "topic": _no_nul(d.topic[:512]),
                "payload": _no_nul(d.payload),
                "payload_bytes": d.payload_bytes,
                "item_index": d.item_index,
                "field": (d.field or None) and _no_nul(d.field[:128]),
                "reason": _no_nul(d.reason),
                "reason_code": d.reason_code,
            }
            for d in letters
        ]
        with self.engine.begin() as conn:
            conn.execute(dead_letters.insert(), rows)
        return len(rows)

    def write_machine_statuses(self, statuses: Iterable[tuple[str, str, datetime]]) -> None:
        """Keep the latest ``(asset_id, status, ts)`` machine state of each asset, by ``ts`` (event time).

        A state older than the stored one, or as old (the first one stays, as for readings), changes
        nothing, whatever the order of arrival. Assets must exist.
        """
        newest: dict[str, tuple[str, datetime]] = {}
        for asset_id, status, ts in statuses:
            if asset_id not in newest or ts > newest[asset_id][1]:
                newest[asset_id] = (status, ts)
        if not newest:
            return
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        statement = insert(machine_status)
        statement = statement.on_conflict_do_update(
            index_elements=[machine_status.c.asset_id],
            set_={"status": statement.excluded.status, "ts": statement.excluded.ts},
            where=machine_status.c.ts < statement.excluded.ts,
        )
        rows = [{"asset_id": a, "status": status, "ts": ts} for a, (status, ts) in sorted(newest.items())]
        with self.engine.begin() as conn:
            conn.execute(statement, rows)

    def latest_machine_status(self, asset_id: str) -> tuple[str, datetime] | None:
        """``(status, ts)`` of the latest stored machine state of ``asset_id``, or None."""
        with self.reads.connect() as conn:
            row = conn.execute(
                select(machine_status.c.status, machine_status.c.ts).where(machine_status.c.asset_id == asset_id)
            ).first()
        return (row.status, row.ts) if row else None

    def list_dead_letters(
        self,
        *,
        topic_prefix: str | None = None,
        reason_code: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        newest_first: bool = False,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        """Stored dead letters (with their ``id``), oldest first unless ``newest_first``.

        Args:
            topic_prefix: only letters whose topic starts with it (matched literally).
            reason_code: only letters of this category (``invalid_item``, ``unknown_asset`` ...).
            since: only letters received at or after this UTC instant.
            before_id: only letters stored before this id (paging newest first).
            limit: at most this many letters.
        """
        order = dead_letters.c.id.desc() if newest_first else dead_letters.c.id
        query = select(dead_letters).order_by(order).limit(limit)
        if topic_prefix is not None:
            query = query.where(dead_letters.c.topic.startswith(topic_prefix, autoescape=True))
        if reason_code is not None:
            query = query.where(dead_letters.c.reason_code == reason_code)
        if since is not None:
            query = query.where(dead_letters.c.received_at >= since)
        if before_id is not None:
            query = query.where(dead_letters.c.id < before_id)
        with self.reads.connect() as conn:
            return [
                DeadLetter(
                    r.topic, r.payload, r.payload_bytes, r.item_index, r.field, r.reason, r.reason_code, r.received_at, r.id
                )
                for r in conn.execute(query)
            ]

    def ping(self) -> None:
        """Run a trivial query; raises when the database is unreachable."""
        with self.reads.connect() as conn:
            conn.execute(text("SELECT 1"))


#: What a NUL character (U+0000) of a dead letter's text is stored as: U+2400 SYMBOL FOR NULL.
NUL_STAND_IN = "\u2400"


def _no_nul(text: str) -> str:
    """``text`` with each NUL replaced by :data:`NUL_STAND_IN` (PostgreSQL text cannot hold NUL)."""
    return text.replace("\x00", NUL_STAND_IN) if "\x00" in text else text
