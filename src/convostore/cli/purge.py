"""``convostore purge``: delete expired conversations (run it from cron, or let
``convostore serve --purge-every MINUTES`` do it in the background).

    # every 10 minutes
    */10 * * * *  DATABASE_URL=postgresql://... convostore purge --no-progress
"""

from __future__ import annotations

from typing import Annotated

import typer

from convostore.cli._common import DatabaseUrl, console, friendly_errors
from convostore.cli.transfer import ShowProgress, _progress
from convostore.schemas import PurgeReport


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Conversations per transaction.")
    ] = 1000,
    progress: ShowProgress = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete the conversations past their expiry and not on hold, with their messages,
    in short batches (safe while the app writes, and beside other purgers); each leaves a
    content-free tombstone (id, user, when, why)."""
    from convostore.store import Store

    with friendly_errors(), Store(database_url) as store:
        due = store.purge_expired(dry_run=True)
        if dry_run:
            _summary(due, "would delete")
            return
        with _progress(progress) as bar:
            task = bar.add_task("purging", total=due.conversations)

            def step(total: PurgeReport) -> None:
                bar.update(task, completed=total.conversations)

            report = store.purge_expired(batch_size=batch_size, on_batch=step)
        _summary(report, "deleted")


def _summary(report: PurgeReport, verb: str) -> None:
    batches = "" if report.dry_run else f" in {report.batches} batch(es)"
    console.print(
        f"{verb} {report.conversations} expired conversation(s)"
        f" ({report.temporary} temporary) and {report.messages} message(s){batches}"
    )
