"""``convostore export``, ``import`` and ``stats`` through the command line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from convostore import Store
from convostore.cli import app
from convostore.db import make_engine


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
    # Again (as after a crash): every conversation is already there; a resumed import.
    again = runner.invoke(app, ["import", str(dump), "--database-url", url])
    assert again.exit_code == 0, again.output
    assert "imported 0 conversation(s)" in again.output and "skipped 0" in again.output
    assert "2 already present from an earlier run" in again.output
    # Another conversation under a taken id is a collision: skipped with its reason.
    other = tmp_path / "other.jsonl"
    lines = [json.loads(x) for x in dump.read_text(encoding="utf-8").splitlines()]
    other.write_text(json.dumps({**lines[0], "user_id": "mallory"}) + "\n", encoding="utf-8")
    clash = runner.invoke(app, ["import", str(other), "--database-url", url])
    assert clash.exit_code == 1
    assert "already exists" in clash.output and "skipped 1" in clash.output
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
        assert "no such table" in result.output and "convostore db upgrade" in result.output
        assert "Traceback" not in result.output


def test_unreachable_database_is_a_clear_error(runner: CliRunner) -> None:
    url = "postgresql://root@127.0.0.1:1/nothing"
    result = runner.invoke(app, ["stats", "--database-url", url])
    assert result.exit_code == 1
    assert "database error" in result.output and "Traceback" not in result.output


def test_an_import_killed_midway_leaves_whole_conversations_and_resumes(
    db_url: str, tmp_path: Path
) -> None:
    """kill -9 of ``convostore import``: nothing half-written, new writes work at once (the
    id sequences already moved past the imported ids), and re-running finishes the job."""
    total, per = 1500, 4
    dump = tmp_path / "big.jsonl"
    stamp = "2025-01-01T00:00:00+00:00"
    with dump.open("w", encoding="utf-8") as out:
        for i in range(1, total + 1):
            messages = [
                {
                    "id": (i - 1) * per + p,
                    "position": p,
                    "role": "user",
                    "content": f"m{p}",
                    "created_at": stamp,
                }
                for p in range(1, per + 1)
            ]
            line = {
                "id": i,
                "user_id": f"u{i % 7}",
                "created_at": stamp,
                "updated_at": stamp,
                "messages": messages,
            }
            out.write(json.dumps(line) + "\n")
    convostore = Path(sys.executable).parent / "convostore"
    command = [str(convostore), "import", str(dump), "--database-url", db_url]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = make_engine(db_url)

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM conversations")).scalar_one())

    try:
        deadline = time.monotonic() + 120
        while stored() < 50:  # wait for the import to be well under way, then kill it
            assert proc.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "the import never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with engine.connect() as conn:
            partial = conn.execute(
                text(
                    "SELECT c.id, c.message_count, count(m.id) FROM conversations c"
                    " LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id"
                )
            ).all()
        assert 50 <= len(partial) < total
        assert all(count == per == messages for _, count, messages in partial)
        # New writes work at once: no id collides with an imported one.
        with Store(db_url) as store:
            conv = store.create_conversation("someone", messages=[{"role": "user", "content": "x"}])
            assert conv.id > max(cid for cid, _, _ in partial)
            store.append_message("someone", conv.id, {"role": "assistant", "content": "y"})
            store.delete_conversation("someone", conv.id)
        # Re-running resumes: the rest is imported, what was there is left and said so.
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"imported {total - len(partial)} conversation(s)" in done.stdout
        assert f"{len(partial)} already present" in done.stdout
        assert stored() == total
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
