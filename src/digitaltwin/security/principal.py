"""Who is calling: a user with a login session, or an API key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from digitaltwin.security.roles import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        kind: ``user`` (access token) or ``api_key``.
        id: user id or key id.
        name: username or key name (for logs and the audit log).
        role: the user's *current* role (read from storage on every request); None for keys.
        scopes: a key's scopes (``read``, ``ingest``); empty for users.
        site_id: the only site a key may ingest for, or None.
        session_id: the user's login session (token family).
        mfa_missing: the user's role requires MFA and this session did not use it.
    """

    kind: Literal["user", "api_key"]
    id: str
    name: str
    role: Role | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    site_id: str | None = None
    session_id: str | None = None
    mfa_missing: bool = False

    @property
    def label(self) -> str:
        """``user:NAME`` or ``key:ID`` for the audit log."""
        return f"user:{self.name}" if self.kind == "user" else f"key:{self.id}"
