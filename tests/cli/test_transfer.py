"""``convostore export``, ``import`` and ``stats`` through the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from convostore import Store
from convostore.cli import app


def _fill(store: Store) -> None:
    a = store.create_conversation("alice", title="Ünïcødé ✓", metadata={"k": "v"})
    store.append_messages(
        "alice",
        a.id,
        [
            {"role": "user", "content": "hi 👋"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "ok", "tool_call_id": "c1"},
        ],
    )
    store.create_conversation("bob", messages=[{"role": "user", "content": "yo"}])


def test_export_to_file_and_stdout(
    runner: CliRunner, store: Store, db_url: str, tmp_path: Path
) -> None:
    _fill(store)
    out = tmp_path / "all.jsonl"
    result = runner.invoke(app, ["export", "-o", str(out), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "exported 2 conversation(s)" in result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["user_id"] for x in lines] == ["alice", "bob"]
    only_bob = runner.invoke(app, ["export", "--user", "bob", "--database-url", db_url])
    assert only_bob.exit_code == 0
    assert [json.loads(x)["user_id"] for x in only_bob.stdout.splitlines()] == ["bob"]


def test_import_round_trip_and_skips(
    runner: CliRunner, store: Store, db_url: str, tmp_path: Path, sqlite_template: Path
) -> None:
    _fill(store)
    dump = tmp_path / "dump.jsonl"
    assert runner.invoke(app, ["export", "-o", str(dump), "--database-url", db_url]).exit_code == 0
    target = tmp_path / "target.db"
    shutil.copyfile(sqlite_template, target)
    url = f"sqlite:///{target}"
    result = runner.invoke(app, ["import", str(dump), "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "imported 2 conversation(s), 4 message(s); skipped 0" in result.output
    with Store(url) as copy:
        convs = copy.list_conversations("alice").data
        assert [c.title for c in convs] == ["Ünïcødé ✓"]
        assert [m.to_openai() for m in copy.get_messages("alice", convs[0].id)] == [
            m.to_openai() for m in store.get_messages("alice", convs[0].id)
        ]
    # Again: every conversation is already there, so each is skipped with its reason.
    again = runner.invoke(app, ["import", str(dump), "--database-url", url])
    assert again.exit_code == 1
    assert "imported 0 conversation(s)" in again.output and "already exists" in again.output
    assert "skipped 2" in again.output
    fresh = runner.invoke(app, ["import", str(dump), "--new-ids", "--database-url", url])
    assert fresh.exit_code == 0 and "imported 2" in fresh.output


def test_import_from_stdin_with_a_bad_line(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(app, ["import", "-", "--database-url", db_url], input="{broken\n")
    assert result.exit_code == 1
    assert "not valid JSON" in result.output


def test_import_missing_file(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", str(tmp_path / "nope.jsonl"), "--database-url", db_url])
    assert result.exit_code == 2 and "no such file" in result.output


def test_stats(runner: CliRunner, store: Store, db_url: str) -> None:
    _fill(store)
    result = runner.invoke(app, ["stats", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    rows = {
        line.split()[1]: line.split()[3]
        for line in result.output.splitlines()
        if line.strip().startswith("│")
        and line.split()[1] in ("users", "conversations", "messages")
    }
    assert rows == {"users": "2", "conversations": "2", "messages": "4"}
    assert "database size" in result.output


def test_unmigrated_database_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    for command in (["stats"], ["export"], ["conversations", "list", "--user", "a"]):
        result = runner.invoke(app, [*command, "--database-url", url])
        assert result.exit_code == 1, result.output
        assert "database error" in result.output and "convostore db upgrade" in result.output
        assert "Traceback" not in result.output


def test_unreachable_database_is_a_clear_error(runner: CliRunner) -> None:
    url = "postgresql://root@127.0.0.1:1/nothing"
    result = runner.invoke(app, ["stats", "--database-url", url])
    assert result.exit_code == 1
    assert "database error" in result.output and "Traceback" not in result.output
