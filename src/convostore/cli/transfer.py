"""``convostore export`` / ``convostore import``: JSON Lines backups, other services' exports
(ChatGPT, Claude, OpenAI Conversations), and ``stats``."""

from __future__ import annotations

import json
import sys
import zipfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from convostore.cli._common import DatabaseUrl, console, err_console, friendly_errors
from convostore.db import analyze, make_engine
from convostore.importers import (
    ImportFormatError,
    SourceImportReport,
    detect_format,
    import_file,
    import_path,
)
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


class ImportFormat(StrEnum):
    """What ``convostore import`` reads."""

    auto = "auto"
    jsonl = "jsonl"
    chatgpt = "chatgpt"
    claude = "claude"
    openai = "openai"


#: Rows of the per-conversation table printed at most (``--json`` has every one).
REPORT_ROWS = 50


def import_(
    source: Annotated[
        str,
        typer.Argument(
            help="A convostore JSON Lines export (or - for stdin), or a ChatGPT / Claude / "
            "OpenAI export: a file, a folder or a .zip."
        ),
    ],
    format: Annotated[
        ImportFormat,
        typer.Option("--format", "-f", help="Format of SOURCE; auto detects it from the content."),
    ] = ImportFormat.auto,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Owner of the imported conversations (chatgpt/claude/openai)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read and validate everything, write nothing."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full report as JSON on stdout.")
    ] = False,
    new_ids: Annotated[
        bool,
        typer.Option(
            "--new-ids", help="jsonl: let the database assign ids instead of keeping them."
        ),
    ] = False,
    progress: ShowProgress = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Import conversations; each one is all-or-nothing. Exit 1 if any failed or was skipped
    as invalid (jsonl), 2 on a usage error (unknown format, missing --user)."""
    fmt = format.value
    if source != "-" and not Path(source).exists():
        err_console.print(f"[red]error:[/red] {escape(source)}: no such file or folder")
        raise typer.Exit(2)
    if fmt == "auto":
        fmt = _detect(source)
    if fmt == "jsonl":
        if user is not None or dry_run or as_json:
            err_console.print(
                "[red]error:[/red] --user, --dry-run and --json are for chatgpt, claude and "
                "openai exports (a convostore export keeps its own user ids)"
            )
            raise typer.Exit(2)
        _import_jsonl(source, new_ids, progress, database_url)
        return
    if user is None:
        kind = "a ChatGPT, Claude or OpenAI" if fmt == "auto" else f"a {fmt}"
        err_console.print(f"[red]error:[/red] --user is required to import {kind} export")
        raise typer.Exit(2)
    with friendly_errors(), _progress(progress) as bar:
        task = bar.add_task("reading" if dry_run else "importing", total=None)
        engine = make_engine(database_url)
        try:
            if source == "-":
                report = import_file(
                    engine,
                    sys.stdin.buffer,
                    user_id=user,
                    name="stdin",
                    format=fmt,
                    dry_run=dry_run,
                )
            else:
                report = import_path(
                    engine,
                    source,
                    user_id=user,
                    format=fmt,
                    dry_run=dry_run,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
            if report.messages and not dry_run:
                analyze(engine)
        except ImportFormatError as exc:
            err_console.print(f"[red]error:[/red] {escape(exc.rule)}")
            raise typer.Exit(2) from None
        finally:
            engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        console.print(f"{report.format or fmt}: {report.summary()}", markup=False)
    _print_results(report)
    if not report.ok:
        raise typer.Exit(1)


def _detect(source: str) -> str:
    """auto: a plain file is looked at; a folder or a zip is another service's export."""
    if source == "-":
        return "jsonl"
    path = Path(source)
    if not path.is_file() or zipfile.is_zipfile(path):
        return "auto"
    with path.open("rb") as f:
        found = detect_format(f.read(256 * 1024))
    return found or "auto"


def _print_results(report: SourceImportReport) -> None:
    """Skipped and failed conversations (and notes of imported ones) as a table on stderr."""
    rows = [r for r in report.conversations if r.status != "imported" or r.notes]
    if not rows:
        return
    table = Table(title="dry run" if report.dry_run else "import report")
    table.add_column("status")
    table.add_column("source")
    table.add_column("title")
    table.add_column("reason / notes")
    for r in rows[:REPORT_ROWS]:
        detail = "; ".join(x for x in (r.reason, *r.notes) if x)
        style = {"failed": "red", "skipped": "yellow"}.get(r.status, "")
        table.add_row(
            Text(r.status, style=style),
            Text(r.external_id or r.source or ""),
            Text(r.title or ""),
            Text(detail),
        )
    err_console.print(table)
    if len(rows) > REPORT_ROWS:
        err_console.print(f"... and {len(rows) - REPORT_ROWS} more (use --json for all)")


def _import_jsonl(
    source: str, new_ids: bool, progress: bool | None, database_url: str | None
) -> None:
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
            if report.messages:
                analyze(engine)
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
