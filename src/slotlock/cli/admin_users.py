"""Administration: ``slotlock user add|remove`` and ``slotlock token add|list|revoke``.

A token is printed once, when it is made (only its hash is stored); everywhere else
a token is named by its id (``slk_<id>``), which proves nothing by itself.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import click

from ..users import Users, token_id_of
from .core import main, redis_or_exit, settings_or_exit

DURATION = re.compile(r"^(\d+)([smhd]?)$")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(ctx, param, value: str | None) -> int | None:
    if value is None:
        return None
    match = DURATION.match(value.strip().lower())
    seconds = int(match.group(1)) * UNIT_S[match.group(2)] if match else 0
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} is not a positive duration like 90d, 12h, 30m "
                                 "or 3600 (seconds)")
    return seconds


EXPIRES_IN = click.option("--expires-in", callback=_duration, metavar="DURATION",
                          help="The API token stops working after this long, e.g. 90d, 12h, "
                               "30m, 3600 (seconds). Default: no expiry.")


def _users() -> Users:
    return Users(redis_or_exit(settings_or_exit()))


def _when(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@main.group()
def user() -> None:
    """Users and their API tokens."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May cancel anybody's bookings.")
@click.option("--password-stdin", is_flag=True,
              help="Read a password for the web UI from standard input (a new password "
                   "signs the user out of every web session).")
@EXPIRES_IN
def user_add(name: str, admin: bool, password_stdin: bool, expires_in: int | None) -> None:
    """Create user NAME (or update it) and print a new API token as the last line."""
    users = _users()
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    existed = users.get(name) is not None
    try:
        users.add(name, admin=admin, password=password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"user {name} {'updated' if existed else 'created'}"
               f"{' (admin)' if admin else ''}; API token:")
    click.echo(users.issue_token(name, expires_in_s=expires_in))


@user.command("remove")
@click.argument("name")
def user_remove(name: str) -> None:
    """Remove user NAME: its API tokens and web sessions stop working at once.

    Its bookings stay (owned by the name)."""
    if not _users().remove(name):
        raise click.ClickException(f"no user {name!r}")
    click.echo(f"user {name} removed; its tokens and sessions no longer work")


@main.group()
def token() -> None:
    """API tokens: add, list, revoke."""


@token.command("add")
@click.argument("name")
@EXPIRES_IN
def token_add(name: str, expires_in: int | None) -> None:
    """Print a new API token for user NAME as the last line."""
    users = _users()
    try:
        issued = users.issue_token(name, expires_in_s=expires_in)
    except KeyError as exc:
        raise click.ClickException(f"no user {name!r}") from exc
    click.echo(f"API token for {name}:")
    click.echo(issued)


@token.command("list")
@click.argument("name")
def token_list(name: str) -> None:
    """The ids of user NAME's API tokens, with when each was made and expires."""
    users = _users()
    if users.get(name) is None:
        raise click.ClickException(f"no user {name!r}")
    items = users.tokens(name)
    click.echo(f"{len(items)} token(s) of {name}:")
    for item in items:
        click.echo(f"  slk_{item.token_id}  created {_when(item.created_at)}  "
                   f"expires {_when(item.expires_at)}")


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke an API token, named by its id (slk_<id>, as ``token list`` shows it)."""
    found = token_id_of(token_id)
    if found is None:
        raise click.ClickException("that is not a token id like slk_0123456789abcdef")
    if not _users().revoke(found):
        raise click.ClickException(f"no token slk_{found}")
    click.echo(f"token slk_{found} revoked")
