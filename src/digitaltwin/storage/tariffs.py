"""Tariffs and tariff assignments: the tables of the accounting aggregate.

Kept apart from :mod:`digitaltwin.storage.repository` (one repository per aggregate); it
shares its engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select
from sqlalchemy.exc import IntegrityError

from digitaltwin.domain.errors import ConflictError, NotFoundError
from digitaltwin.storage.tables import tariff_assignments, tariffs


@dataclass(frozen=True, slots=True)
class StoredTariff:
    """A tariff as imported: ``source`` is the record that came in, ``format`` urdb or native."""

    id: str
    name: str
    format: str
    currency: str
    source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which tariff bills a site or an asset from ``valid_from`` to ``valid_to`` (exclusive, local dates)."""

    id: int
    tariff_id: str
    site_id: str | None
    asset_id: str | None
    valid_from: date
    valid_to: date | None
    bill_day: int | None


def _tariff(row: Any) -> StoredTariff:
    return StoredTariff(row.id, row.name, row.format, row.currency, row.source)


def _assignment(row: Any) -> Assignment:
    return Assignment(row.id, row.tariff_id, row.site_id, row.asset_id, row.valid_from, row.valid_to, row.bill_day)


class TariffStore:
    """Reads and writes ``tariffs`` and ``tariff_assignments``.

    Args:
        engine: the engine of the migrated database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, tariff: StoredTariff) -> StoredTariff:
        """Raises ConflictError naming ``id`` when the tariff id exists."""
        values = {"id": tariff.id, "name": tariff.name, "format": tariff.format, "currency": tariff.currency,
                  "source": tariff.source, "created_at": datetime.now(UTC)}
        try:
            with self.engine.begin() as conn:
                conn.execute(tariffs.insert().values(**values))
        except IntegrityError:
            raise ConflictError(f"tariff {tariff.id!r} exists", field="id") from None
        return tariff

    def get(self, tariff_id: str, *, field: str = "tariff_id") -> StoredTariff:
        """Raises NotFoundError naming ``field``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(tariffs).where(tariffs.c.id == tariff_id)).first()
        if row is None:
            raise NotFoundError(f"tariff {tariff_id!r} not found", field=field)
        return _tariff(row)

    def list(self) -> list[StoredTariff]:
        with self.engine.connect() as conn:
            return [_tariff(r) for r in conn.execute(select(tariffs).order_by(tariffs.c.id))]

    def assign(self, assignment: Assignment) -> Assignment:
        """Store an assignment (its ``id`` is ignored); returns it with the new id.

        Raises:
            ConflictError: naming ``valid_from`` when it overlaps another assignment of the same site or asset.
        """
        owner = (tariff_assignments.c.site_id == assignment.site_id) if assignment.site_id else (
            tariff_assignments.c.asset_id == assignment.asset_id
        )
        overlap = and_(
            owner,
            or_(tariff_assignments.c.valid_to.is_(None), tariff_assignments.c.valid_to > assignment.valid_from),
            *([tariff_assignments.c.valid_from < assignment.valid_to] if assignment.valid_to else []),
        )
        with self.engine.begin() as conn:
            clash = conn.execute(select(tariff_assignments).where(overlap)).first()
            if clash is not None:
                raise ConflictError(
                    f"overlaps assignment {clash.id} of tariff {clash.tariff_id!r} "
                    f"({clash.valid_from}..{clash.valid_to or 'open'}); end it first", field="valid_from"
                )
            new_id = conn.execute(
                tariff_assignments.insert().values(
                    site_id=assignment.site_id, asset_id=assignment.asset_id, tariff_id=assignment.tariff_id,
                    valid_from=assignment.valid_from, valid_to=assignment.valid_to, bill_day=assignment.bill_day,
                    created_at=datetime.now(UTC),
                )
            ).inserted_primary_key[0]
        return Assignment(int(new_id), assignment.tariff_id, assignment.site_id, assignment.asset_id,
                          assignment.valid_from, assignment.valid_to, assignment.bill_day)

    def assignments(self, *, site_id: str | None = None, asset_id: str | None = None) -> list[Assignment]:
        """Assignments of one site or one asset, oldest first."""
        column = tariff_assignments.c.site_id if site_id is not None else tariff_assignments.c.asset_id
        key = site_id if site_id is not None else asset_id
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(tariff_assignments).where(column == key).order_by(tariff_assignments.c.valid_from)
            )
            return [_assignment(r) for r in rows]
