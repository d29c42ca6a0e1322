"""``digitaltwin users ...``: accounts from the command line (there are no default accounts)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from digitaltwin.config import Settings
from digitaltwin.domain.errors import DomainError
from digitaltwin.security.accounts import Accounts, parse_role
from digitaltwin.security.audit import AuditLog
from digitaltwin.security.principal_cache import epoch_for
from digitaltwin.security.store import SecurityStore
from digitaltwin.storage.db import make_engine, migrate

users_app = typer.Typer(help="User accounts (roles: viewer, operator, admin).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _accounts() -> Accounts:
    settings = Settings()
    engine = make_engine(settings)
    if settings.embedded:
        migrate(engine)
    epoch = epoch_for(settings)  # changes made here end cached sessions in running servers too
    store = SecurityStore(engine, on_change=epoch.bump if epoch is not None else None)

    def clock() -> datetime:
        return datetime.now(UTC)

    return Accounts(store, AuditLog(store, clock), clock)


def _read_password() -> str:
    """The password from standard input when it is not a terminal (first line), else from a hidden prompt."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _fail(exc: DomainError) -> typer.Exit:
    err.print(f"[red]error[/red] ({exc.field}): {exc.message}")
    return typer.Exit(code=2)


@users_app.command("create")
def create(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
) -> None:
    """Create a user; the password is read from stdin (``echo ... |``) or a prompt, never from the command line."""
    try:
        parsed = parse_role(role)
        accounts = _accounts()
        user = accounts.create(username, _read_password(), parsed, actor="cli")
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"user {user.username} ({user.role.value}) created")


@users_app.command("set-password")
def set_password(username: str) -> None:
    """Set a new password (stdin or prompt); the user's sessions end."""
    try:
        accounts = _accounts()
        accounts.update(username, actor="cli", password=_read_password())
    except DomainError as exc:
        raise _fail(exc) from None
    console.print(f"password of {username} changed")


@users_app.command("list")
def list_users() -> None:
    """List users."""
    table = Table("username", "role", "active", "mfa")
    for user in _accounts().list():
        table.add_row(user.username, user.role.value, "yes" if user.active else "no", "yes" if user.mfa_enabled else "no")
    console.print(table)
