"""``convostore keys create|list|revoke``: API keys for backends that call the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from convostore.apikeys import create_api_key, list_api_keys, revoke_api_key
from convostore.cli._common import DatabaseUrl, console, err_console, friendly_errors
from convostore.store import Store

app = typer.Typer(
    help="API keys: credentials for backends that call the REST API.", no_args_is_help=True
)


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at is not None else "-"


@app.command()
def create(
    label: Annotated[str, typer.Option("--label", help="What the key is for (shown in logs).")],
    user: Annotated[
        str | None, typer.Option("--user", help="The user the key acts as.", show_default=False)
    ] = None,
    act_for_users: Annotated[
        bool,
        typer.Option(
            "--act-for-users",
            help="The key may act for any user it names per request (X-Convostore-User).",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it, once: only its hash is stored."""
    with friendly_errors(), Store(database_url) as store:
        key, info = create_api_key(
            store, label=label, user_id=user, can_act_for_users=act_for_users
        )
    # The key alone on stdout (KEY=$(convostore keys create ...)); the rest on stderr.
    typer.echo(key)
    err_console.print(
        f"created API key {info.id} ({escape(info.label)}); it is shown only now: store it "
        "in your backend's secrets. Send it as `Authorization: Bearer <key>`.",
        highlight=False,
    )


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List the keys (never the keys themselves: their first characters)."""
    with friendly_errors(), Store(database_url) as store:
        keys = list_api_keys(store, include_revoked=all_)
    table = Table(title="API keys")
    for col in ("id", "key", "label", "user", "acts for users", "created", "last used", "revoked"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for k in keys:
        table.add_row(
            str(k.id),
            k.prefix + "\u2026",
            Text(k.label),
            Text(k.user_id or "-"),
            "yes" if k.can_act_for_users else "no",
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    console.print(table)


@app.command()
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (from `convostore keys list`).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    with friendly_errors(), Store(database_url) as store:
        info = revoke_api_key(store, key_id)
    console.print(f"API key {info.id} ({escape(info.label)}) revoked at {_when(info.revoked_at)}")
