"""``convostore purge [--dry-run]``: counts, deletes, and summarises."""

from __future__ import annotations

from datetime import timedelta

from typer.testing import CliRunner

from convostore import Store
from convostore.cli import app
from convostore.types import utcnow


def test_purge_dry_run_then_purge(runner: CliRunner, db_url: str) -> None:
    past = utcnow() - timedelta(days=2)
    with Store(db_url, clock=lambda: past) as old:
        for i in range(3):
            conv = old.create_conversation("alice", retention="1d", temporary=i == 0)
            old.append_message("alice", conv.id, {"role": "user", "content": "bye"})
        kept = old.create_conversation("alice", retention="30d")
    dry = runner.invoke(app, ["purge", "--dry-run", "--database-url", db_url])
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 expired conversation(s) (1 temporary) and 3 message(s)" in dry.output
    done = runner.invoke(
        app, ["purge", "--batch-size", "2", "--progress", "--database-url", db_url]
    )
    assert done.exit_code == 0, done.output
    assert "deleted 3 expired conversation(s) (1 temporary) and 3 message(s) in 2" in done.output
    with Store(db_url) as store:
        assert [c.id for c in store.list_conversations("alice").data] == [kept.id]
    again = runner.invoke(app, ["purge", "--database-url", db_url])
    assert "deleted 0 expired" in again.output


def test_purge_needs_a_migrated_database(runner: CliRunner, tmp_path: object) -> None:
    result = runner.invoke(app, ["purge", "--database-url", "sqlite:///empty.db"])
    assert result.exit_code == 1 and "convostore db upgrade" in result.output
