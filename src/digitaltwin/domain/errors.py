"""One error hierarchy for the whole product, mapped to HTTP in ``api/errors.py``.

Each error names the offending ``field`` where there is one, so a client (or a
dead-letter record) can tell exactly what to fix.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected, user-facing error.

    Args:
        message: human-readable reason.
        field: name of the offending input field, when one is to blame.
    """

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "reason": self.message}


class ValidationError(DomainError):
    """An input value is malformed or implausible (HTTP 422)."""

    status_code = 422


class UnknownUnitError(ValidationError):
    """A unit that cannot be converted to the quantity's canonical unit."""

    def __init__(self, unit: object, quantity: str, *, field: str = "unit") -> None:
        from digitaltwin.domain.units import accepted_units

        super().__init__(
            f"unknown unit {unit!r} for {quantity}; accepted: {', '.join(accepted_units(quantity))}",
            field=field,
        )
        self.unit = unit


class NotFoundError(DomainError):
    """A site, asset, series or model that does not exist (HTTP 404)."""

    status_code = 404


class ConflictError(DomainError):
    """A create that clashes with an existing object (HTTP 409)."""

    status_code = 409
