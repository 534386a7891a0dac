"""``convostore export`` / ``convostore import``: JSON Lines backups, and ``stats``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from convostore.cli._common import DatabaseUrl, console, err_console, friendly_errors
from convostore.db import make_engine
from convostore.io import database_stats, export_jsonl, import_jsonl

ShowProgress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Progress bar on stderr (default: when stderr is a terminal).",
        show_default=False,
    ),
]


def _progress(enabled: bool | None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not (err_console.is_terminal if enabled is None else enabled),
    )


def export(
    output: Annotated[
        str, typer.Option("--output", "-o", help="File to write, or - for stdout.")
    ] = "-",
    user: Annotated[
        str | None, typer.Option("--user", help="Only this user's conversations (default: all).")
    ] = None,
    progress: ShowProgress = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Export conversations with their messages as JSON Lines (one conversation per line)."""
    with friendly_errors(), _progress(progress) as bar:
        task = bar.add_task("exporting", total=None)

        def step(n: int) -> None:
            if n >= 0:
                bar.update(task, total=n)
            else:
                bar.advance(task)

        engine = make_engine(database_url)
        try:
            if output == "-":
                count = export_jsonl(engine, sys.stdout, user_id=user, progress=step)
                sys.stdout.flush()
            else:
                with Path(output).open("w", encoding="utf-8", newline="\n") as out:
                    count = export_jsonl(engine, out, user_id=user, progress=step)
        finally:
            engine.dispose()
    err_console.print(f"exported {count} conversation(s)")


def import_(
    source: Annotated[str, typer.Argument(help="JSON Lines file from `export`, or - for stdin.")],
    new_ids: Annotated[
        bool,
        typer.Option("--new-ids", help="Let the database assign ids instead of keeping them."),
    ] = False,
    progress: ShowProgress = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Import JSON Lines; each conversation is all-or-nothing. Exit 1 if any was skipped."""
    with friendly_errors(), _progress(progress) as bar:
        engine = make_engine(database_url)
        try:
            if source == "-":
                report = import_jsonl(engine, sys.stdin, keep_ids=not new_ids)
            else:
                path = Path(source)
                if not path.is_file():
                    err_console.print(f"[red]error:[/red] {source}: no such file")
                    raise typer.Exit(2)
                task = bar.add_task("importing", total=path.stat().st_size)
                with path.open(encoding="utf-8", newline="\n") as lines:
                    report = import_jsonl(
                        engine,
                        lines,
                        keep_ids=not new_ids,
                        progress=lambda n: bar.advance(task, n),
                    )
        finally:
            engine.dispose()
    resumed = (
        f"; {report.already_present} already present from an earlier run, left as they are"
        if report.already_present
        else ""
    )
    console.print(
        f"imported {report.imported} conversation(s), {report.messages} message(s); "
        f"skipped {len(report.skipped)}{resumed}"
    )
    if report.skipped:
        table = Table(title="skipped")
        table.add_column("line", justify="right")
        table.add_column("conversation", justify="right")
        table.add_column("reason")
        for s in report.skipped:
            table.add_row(str(s.line), str(s.conversation_id or ""), Text(s.reason))
        err_console.print(table)
        raise typer.Exit(1)


def stats(database_url: DatabaseUrl = None) -> None:
    """Counts of users, conversations and messages, and table sizes where known."""
    with friendly_errors():
        engine = make_engine(database_url)
        try:
            s = database_stats(engine)
        finally:
            engine.dispose()
    table = Table(title=f"convostore stats ({s.backend})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("size", justify="right")
    for name, rows in (
        ("users", s.users),
        ("conversations", s.conversations),
        ("messages", s.messages),
    ):
        size = s.table_bytes.get(name)
        table.add_row(name, f"{rows:,}", _human(size) if size is not None else "n/a")
    console.print(table)
    if s.database_bytes is not None:
        console.print(f"database size: {_human(s.database_bytes)}")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
