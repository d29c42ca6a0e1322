"""The three roles and what each may do.

* ``viewer``: read.
* ``operator``: read, ingest, train, acknowledge (every write that is not administration).
* ``admin``: everything, including users, API keys, role policies, the audit log, site and
  asset registration and model activation.

Roles are ordered: a higher role may do everything a lower one may.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A user's role; compare with :meth:`allows`."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for operator, 2 for admin."""
        return _ORDER.index(self)

    def allows(self, required: Role) -> bool:
        """True when this role is ``required`` or above it."""
        return self.rank >= required.rank


_ORDER = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
