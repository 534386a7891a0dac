"""``convostore conversations list``, ``messages show`` and ``search``: look at stored data."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from convostore._sql import HIGHLIGHT
from convostore.cli._common import After, DatabaseUrl, console, friendly_errors
from convostore.store import Store

conversations_app = typer.Typer(help="Inspect conversations.", no_args_is_help=True)
messages_app = typer.Typer(help="Inspect messages.", no_args_is_help=True)

User = Annotated[str, typer.Option("--user", help="The user whose data to show.")]
PREVIEW = 200


def _short(text: str, width: int = PREVIEW) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


@conversations_app.command("list")
def list_conversations(
    user: User,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Page size.")] = 20,
    after: After = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List USER's conversations, most recently active first."""
    with friendly_errors(), Store(database_url) as store:
        page = store.list_conversations(user, limit=limit, cursor=after)
    table = Table(title=f"conversations of {user}")
    for col in ("id", "title", "messages", "updated", "created"):
        table.add_column(col, justify="right" if col in ("id", "messages") else "left")
    for c in page.data:
        table.add_row(
            str(c.id),
            Text(c.title or ""),
            str(c.message_count),
            c.updated_at.isoformat(timespec="seconds"),
            c.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --after {page.next_cursor}", soft_wrap=True)


@messages_app.command("show")
def show_messages(
    conversation: Annotated[int, typer.Argument(help="Conversation id.")],
    user: User,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Page size.")] = 100,
    after: Annotated[int | None, typer.Option(min=0, help="Start after this position.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show the messages of CONVERSATION (owned by USER) in order."""
    with friendly_errors(), Store(database_url) as store:
        page = store.list_messages(user, conversation, after=after, limit=limit)
    table = Table(title=f"conversation {conversation}")
    table.add_column("#", justify="right")
    table.add_column("role")
    table.add_column("content")
    table.add_column("created")
    for m in page.data:
        content = _short(m.content)
        if m.tool_calls:
            names = ", ".join(str(c.get("function", {}).get("name", "?")) for c in m.tool_calls)
            content = f"{content}\n[tool calls: {names}]".strip()
        if m.tool_call_id:
            content = f"[result of {m.tool_call_id}] {content}"
        # Text, not markup: stored content may contain "[...]" that rich would swallow.
        table.add_row(
            str(m.position), m.role, Text(content), m.created_at.isoformat(timespec="seconds")
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --after {page.next_cursor}")


def _highlighted(snippet: str) -> Text:
    """The snippet with each ``**match**`` in bold (as text, never as rich markup)."""
    out = Text()
    for i, part in enumerate(snippet.split(HIGHLIGHT)):
        out.append(part, style="bold yellow" if i % 2 else "")
    return out


def search(
    query: Annotated[str, typer.Argument(help='Words (all must match), "a phrase", word*.')],
    user: User,
    conversation: Annotated[
        int | None, typer.Option("--conversation", help="Only this conversation.")
    ] = None,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="Only messages of this role (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Page size.")] = 20,
    after: After = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Full-text search over USER's messages and conversation titles, best match first."""
    with friendly_errors(), Store(database_url) as store:
        page = store.search(
            user, query, conversation_id=conversation, roles=role, limit=limit, cursor=after
        )
    table = Table(title=f"search of {user}: {query}")
    for col in ("conversation", "#", "role", "match", "rank"):
        table.add_column(col, justify="right" if col in ("#", "rank") else "left")
    for hit in page.data:
        where = Text(f"{hit.conversation_id} {_short(hit.conversation_title or '', 40)}")
        if hit.kind == "title":
            table.add_row(where, "", "title", _highlighted(hit.snippet), f"{hit.rank:.3f}")
        else:
            assert hit.message is not None
            table.add_row(
                where,
                str(hit.message.position),
                hit.message.role,
                _highlighted(hit.snippet),
                f"{hit.rank:.3f}",
            )
    console.print(table)
    if not page.data:
        console.print("no matches")
    if page.next_cursor:
        console.print(f"more: --after {page.next_cursor}", soft_wrap=True)
