"""``convostore import`` of ChatGPT, Claude and OpenAI exports, and its memory bound."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from convostore import Store
from convostore.cli import app

DATA = Path(__file__).parent.parent / "data" / "imports"
SPLIT = DATA / "chatgpt-split"


def test_import_reports_and_exits_1_when_a_conversation_failed(
    runner: CliRunner, store: Store, db_url: str
) -> None:
    args = ["import", str(DATA / "chatgpt-conversations.json"), "--user", "alice"]
    result = runner.invoke(app, [*args, "--database-url", db_url])
    assert result.exit_code == 1, result.output
    assert "chatgpt: imported 2 conversation(s), 8 message(s); skipped 0; failed 1" in result.output
    assert "mapping: node 'gone' of the branch is missing" in result.output
    assert "custom instructions not imported" in result.output
    assert len(store.list_conversations("alice").data) == 2


def test_dry_run_writes_nothing_then_import_and_reimport(
    runner: CliRunner, store: Store, db_url: str, tmp_path: Path
) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in SPLIT.iterdir():
            z.write(f, f.name)
    base = ["import", str(archive), "--user", "alice", "--database-url", db_url]
    dry = runner.invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would import 3 conversation(s), 6 message(s)" in dry.output
    assert store.list_conversations("alice").data == []
    real = runner.invoke(app, base)
    assert real.exit_code == 0 and "imported 3 conversation(s)" in real.output
    again = runner.invoke(app, [*base, "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["summary"] == {"imported": 0, "skipped": 3, "failed": 0, "messages": 0}
    assert {c["reason"].split(" as ")[0] for c in report["conversations"]} == {"already imported"}


def test_each_format_and_forced_format(runner: CliRunner, store: Store, db_url: str) -> None:
    for name, fmt, convs in (
        ("claude-conversations.json", "claude", 1),
        ("openai-items.jsonl", "openai", 2),
    ):
        args = ["import", str(DATA / name), "--user", "bob", "--format", fmt]
        result = runner.invoke(app, [*args, "--database-url", db_url])
        assert f"{fmt}: imported {convs} conversation(s)" in result.output, result.output
    assert len(store.list_conversations("bob").data) == 3


def test_usage_errors_exit_2(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    chatgpt = str(DATA / "chatgpt-conversations.json")
    no_user = runner.invoke(app, ["import", chatgpt, "--database-url", db_url])
    assert no_user.exit_code == 2 and "--user is required" in no_user.output
    jsonl = tmp_path / "backup.jsonl"
    jsonl.write_text('{"id": 1, "user_id": "a", "messages": []}\n')
    with_user = runner.invoke(app, ["import", str(jsonl), "--user", "a", "--database-url", db_url])
    assert with_user.exit_code == 2 and "keeps its own user ids" in with_user.output
    other = tmp_path / "notes.json"
    other.write_text('{"hello": 1}')
    result = runner.invoke(app, ["import", str(other), "--user", "a", "--database-url", db_url])
    assert result.exit_code == 2 and "not a ChatGPT, Claude or OpenAI" in result.output
    bad = runner.invoke(app, ["import", chatgpt, "--format", "bard", "--database-url", db_url])
    assert bad.exit_code == 2


# ------------------------------------------------------------------------ bounded memory

#: The peak RSS an import may reach at any export size (the process starts at ~75 MB).
RSS_BOUND_MB = 200
BIG_MB = 500


def write_chatgpt_export(path: Path, target_bytes: int, messages: int = 20) -> tuple[int, int]:
    """A ChatGPT ``conversations.json`` of about ``target_bytes``: one real-shaped
    conversation (20 messages of ~2.4 KB) repeated under new ids; written in a second."""
    text = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod " * 40)[:2400]
    mapping: dict[str, object] = {
        "root": {"id": "root", "message": None, "parent": None, "children": ["n0"]}
    }
    parent = "root"
    for i in range(messages):
        node = f"n{i}"
        mapping[node] = {
            "id": node,
            "parent": parent,
            "children": [f"n{i + 1}"] if i + 1 < messages else [],
            "message": {
                "id": node,
                "author": {"role": "assistant" if i % 2 else "user", "name": None},
                "create_time": 1735725600.0 + i,
                "content": {"content_type": "text", "parts": [f"{i} {text}"]},
                "metadata": {"model_slug": "gpt-4o"} if i % 2 else {},
                "recipient": "all",
            },
        }
        parent = node
    pieces = json.dumps(
        {
            "title": "Conversation @@",
            "create_time": 1735725600.0,
            "update_time": 1735729200.0,
            "current_node": parent,
            "id": "conv-@@",
            "mapping": mapping,
        }
    ).split("@@")
    written = count = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        while written < target_bytes:
            block = ("," if count else "") + str(count).join(pieces)
            f.write(block)
            written += len(block)
            count += 1
        f.write("]")
    return count, count * messages


MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(done.stdout + done.stderr)
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def _peak_rss_mb(args: list[str], env_url: str) -> tuple[float, str]:
    """Run ``convostore ARGS`` in a child process; its peak RSS (MB) and its output."""
    cli = Path(sys.executable).with_name("convostore")
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(cli), *args, "--no-progress"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": env_url, "COLUMNS": "200"},
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kb = int(done.stdout.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    return kb / 1024, done.stdout


def test_a_500_mb_export_imports_in_bounded_memory(tmp_path: Path, sqlite_template: Path) -> None:
    """The whole 500 MB export read, converted and validated (dry run: everything but the
    INSERTs), and 100 MB of it really imported into SQLite, each under the same bound as a
    tiny export plus a little: memory does not grow with the file."""
    import shutil

    db = tmp_path / "big.db"
    shutil.copyfile(sqlite_template, db)
    url = f"sqlite:///{db}"
    small, big = tmp_path / "small.json", tmp_path / "conversations.json"
    try:
        write_chatgpt_export(small, 1 << 20)
        convs, msgs = write_chatgpt_export(big, BIG_MB << 20)
        base_mb, _ = _peak_rss_mb(["import", str(small), "--user", "u", "--dry-run"], url)
        big_mb, out = _peak_rss_mb(["import", str(big), "--user", "u", "--dry-run"], url)
        assert f"would import {convs} conversation(s), {msgs} message(s)" in out
        assert big_mb < RSS_BOUND_MB, (big_mb, base_mb)
        assert big_mb - base_mb < 50, (big_mb, base_mb)
        write_chatgpt_export(big, 100 << 20)
        real_mb, out = _peak_rss_mb(["import", str(big), "--user", "u"], url)
        assert "imported " in out and "failed 0" in out
        assert real_mb < RSS_BOUND_MB, real_mb
    finally:
        big.unlink(missing_ok=True)


def test_an_import_into_postgresql_refreshes_the_planners_statistics(
    runner: CliRunner, store: Store, db_url: str
) -> None:
    """Without statistics (a table just filled, before autovacuum's pass) the planner may
    read one conversation through the index of every user's messages: the import ANALYZEs
    what it filled. SQLite keeps no statistics unless asked: nothing is run there."""
    from sqlalchemy import text

    def analyzed() -> dict[str, Any]:
        with store.engine.connect() as conn:
            if store.engine.dialect.name != "postgresql":
                return {r[0]: None for r in conn.execute(text("SELECT name FROM sqlite_master"))
                        if r[0] == "sqlite_stat1"}  # fmt: skip
            rows = conn.execute(
                text(
                    "SELECT relname, analyze_count FROM pg_stat_user_tables"
                    " WHERE relname IN ('conversations', 'messages')"
                )
            )
            return {str(name): int(count) for name, count in rows}

    before = analyzed()
    args = ["import", str(SPLIT), "--user", "carol"]
    dry = runner.invoke(app, [*args, "--dry-run", "--database-url", db_url])
    assert dry.exit_code == 0, dry.output
    assert analyzed() == before  # a dry run writes nothing, and analyzes nothing
    result = runner.invoke(app, [*args, "--database-url", db_url])
    assert result.exit_code == 0, result.output
    after = analyzed()
    if store.engine.dialect.name == "postgresql":
        assert after == {name: count + 1 for name, count in before.items()}
        assert set(after) == {"conversations", "messages"}
    else:
        assert after == before == {}
