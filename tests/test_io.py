"""JSON Lines export/import: exact round trips on both databases, skips with reasons."""

from __future__ import annotations

import io
import json
import shutil
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from convostore import Store
from convostore.db import make_engine
from convostore.io import database_stats, export_jsonl, import_jsonl
from convostore.migrate import upgrade

TOOL_CALLS = [
    {
        "id": "call_é1",
        "type": "function",
        "function": {"name": "météo", "arguments": '{"ville": "Gent"}'},
    }
]


def populate(store: Store) -> None:
    """Two users, unicode everywhere, tool calls, keys, metadata, an empty conversation."""
    a = store.create_conversation("alice", title="Voyage à Gand 🚲", metadata={"tags": ["π", 1]})
    store.append_messages(
        "alice",
        a.id,
        [
            {"role": "system", "content": "Sois bref.\nLine two\u2028with separator"},
            {"role": "user", "content": "Quel temps à Gand ? 🌧️", "key": "k-1"},
            {"role": "assistant", "content": "", "tool_calls": TOOL_CALLS},
            {"role": "tool", "content": '{"temp": 12}', "tool_call_id": "call_é1"},
            {"role": "assistant", "content": "12 °C, pluie.", "metadata": {"model": "x", "n": 1.5}},
        ],
    )
    store.create_conversation("alice", external_id="sess-α")  # empty, untitled, external id
    b = store.create_conversation(
        "bob ✓", messages=[{"role": "user", "content": "日本語のテキスト"}]
    )
    store.append_message("bob ✓", b.id, {"role": "assistant", "content": "はい"})
    c = store.create_conversation(
        "alice", messages=[{"role": "user", "content": f"m{i}"} for i in range(7)]
    )
    store.delete_messages_after("alice", c.id, 5)  # counter moved back: positions 1..5


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order, for exact comparison."""
    with engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
            for table, order in (
                ("convostore_users", "id"),
                ("conversations", "id"),
                ("messages", "conversation_id, position"),
            )
        }


def export_text(engine: Engine, **kwargs: Any) -> str:
    out = io.StringIO()
    export_jsonl(engine, out, **kwargs)
    return out.getvalue()


@pytest.fixture
def empty_db(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Callable[[str], str]:
    """Factory: a migrated, empty database of the given backend."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            target = tmp_path / f"target-{len(list(tmp_path.iterdir()))}.db"
            shutil.copyfile(sqlite_template, target)
            return f"sqlite:///{target}"
        url: str = request.getfixturevalue("pg_database")("convostore_io_target")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url

    return make


@pytest.fixture
def source(store: Store) -> Iterator[Engine]:
    populate(store)
    yield store.engine


@pytest.mark.parametrize(
    "target_backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_round_trip_is_exact(
    source: Engine, empty_db: Callable[[str], str], target_backend: str, backend: str
) -> None:
    exported = export_text(source, batch_size=2)  # small pages: the keyset paging is exercised
    lines = exported.splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert first["title"] == "Voyage à Gand 🚲" and first["messages"][2]["tool_calls"] == TOOL_CALLS
    assert "🌧️" in exported  # written as UTF-8, not \\u escapes

    target = make_engine(empty_db(target_backend))
    try:
        report = import_jsonl(target, exported.splitlines(keepends=True))
        assert (report.imported, report.messages, report.skipped) == (4, 12, [])
        # A second export says the same (parsed: JSONB does not keep key order).
        again = export_text(target).splitlines()
        assert [json.loads(x) for x in again] == [json.loads(x) for x in lines]
        if target_backend == backend:
            assert dump(target) == dump(source)  # every column of every row
        # Ids were kept and the id sequences moved past them: new rows do not collide.
        with Store(target) as store:
            new = store.create_conversation("alice", messages=[{"role": "user", "content": "new"}])
            assert new.id > max(json.loads(x)["id"] for x in lines)
            assert store.get_history("alice", first["id"])[1]["content"] == "Quel temps à Gand ? 🌧️"
    finally:
        target.dispose()


def test_export_one_user(source: Engine) -> None:
    lines = export_text(source, user_id="bob ✓").splitlines()
    assert [json.loads(x)["user_id"] for x in lines] == ["bob ✓"]
    assert export_text(source, user_id="nobody") == ""


def test_export_reports_progress(source: Engine) -> None:
    calls: list[int] = []
    export_jsonl(source, io.StringIO(), progress=calls.append)
    assert calls == [4, -1, -1, -1, -1]


def test_reimport_skips_existing_ids_and_new_ids_duplicates(source: Engine, store: Store) -> None:
    exported = export_text(source)
    report = import_jsonl(source, exported.splitlines())
    assert (report.imported, report.already_present, report.skipped) == (0, 4, [])
    # The same ids with another owner or creation time are other conversations: collisions.
    changed = [
        json.dumps({**json.loads(x), "created_at": "2001-01-01T00:00:00+00:00"})
        for x in exported.splitlines()
    ]
    report = import_jsonl(source, changed)
    assert report.imported == 0 and report.already_present == 0
    assert [s.reason for s in report.skipped] == [
        f"conversation id {json.loads(x)['id']} already exists" for x in exported.splitlines()
    ]
    before = database_stats(source)
    copy = import_jsonl(source, exported.splitlines(), keep_ids=False)
    # New ids, but external ids stay unique per user: that conversation is skipped.
    assert copy.imported == 3
    assert [s.reason for s in copy.skipped] == ["external_id 'sess-α' is already used by this user"]
    after = database_stats(source)
    assert after.conversations == 2 * before.conversations - 1
    assert after.messages == 2 * before.messages
    assert after.users == before.users


def _line(**overrides: Any) -> str:
    base: dict[str, Any] = {
        "id": 900,
        "user_id": "carol",
        "title": "t",
        "metadata": None,
        "message_count": 1,
        "created_at": "2024-01-02T03:04:05.123456+00:00",
        "updated_at": "2024-01-02T03:04:06+00:00",
        "messages": [
            {
                "id": 9000,
                "position": 1,
                "role": "user",
                "content": "hi",
                "created_at": "2024-01-02T03:04:05.5+00:00",
            }
        ],
    }
    base.update(overrides)
    return json.dumps(base)


def _msg(**overrides: Any) -> dict[str, Any]:
    return {
        "position": 1,
        "role": "user",
        "content": "hi",
        "created_at": "2024-01-02T03:04:05+00:00",
        **overrides,
    }


def test_bad_lines_are_skipped_with_reasons_and_the_rest_imported(db_url: str) -> None:
    lines = [
        "{not json",
        _line(id=1, messages=[_msg(role="robot")]),
        _line(id=2, messages=[_msg(position=2)], message_count=None),
        _line(id=3, message_count=5),
        _line(id=4, created_at="2024-01-02T03:04:05"),  # naive timestamp
        _line(id=5, messages=[_msg(role="tool")]),
        _line(id=6, title="x" * 300),
        _line(id=7, messages=[_msg(content="x" * 10_001)]),
        "",
        _line(id=8),  # fine
        _line(id=9, messages=[{**_msg(), "id": 9000}]),  # message id taken by line 8
        _line(id=10, messages=[_msg(key="a"), _msg(position=2, key="a")], message_count=2),
    ]
    engine = make_engine(db_url)
    try:
        report = import_jsonl(engine, lines)
        reasons = {s.line: s.reason for s in report.skipped}
        assert report.imported == 1 and report.messages == 1
        assert set(reasons) == {1, 2, 3, 4, 5, 6, 7, 8, 11, 12}
        assert reasons[1].startswith("not valid JSON")
        assert reasons[2].startswith("messages[0].role")
        assert reasons[3].startswith("messages[0].position")
        assert reasons[4].startswith("message_count")
        assert reasons[5].startswith("created_at")
        assert reasons[6].startswith("messages[0].tool_call_id")
        assert reasons[7].startswith("title")
        assert reasons[8].startswith("messages[0].content")
        assert reasons[11].startswith("rejected by the database")
        assert reasons[12].startswith("messages.key")
        # Each skip names the conversation id its line carried.
        ids = {s.line: s.conversation_id for s in report.skipped}
        assert ids == {1: None, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 11: 9, 12: 10}
        stats = database_stats(engine)
        # All or nothing: the conversation of line 11 was inserted, then rolled back.
        assert (stats.users, stats.conversations, stats.messages) == (1, 1, 1)
    finally:
        engine.dispose()


def test_stats_counts_and_sizes(source: Engine) -> None:
    stats = database_stats(source)
    assert (stats.users, stats.conversations, stats.messages) == (2, 4, 12)
    assert stats.database_bytes is not None and stats.database_bytes > 0
    if stats.backend == "postgresql":
        assert all(v is not None and v > 0 for v in stats.table_bytes.values())


class _Sink(io.TextIOBase):
    """Counts what is written and keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        self.lines += text.count("\n")
        return len(text)


def test_export_streams_in_bounded_memory(store: Store) -> None:
    conv = store.create_conversation("alice")
    for start in range(0, 3000, 1000):
        store.append_messages(
            "alice",
            conv.id,
            [
                {"role": "user", "content": f"{i:05d}" + "x" * 995}
                for i in range(start, start + 1000)
            ],
        )
    sink = _Sink()
    tracemalloc.start()
    try:
        export_jsonl(store.engine, sink, batch_size=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.lines == 1 and sink.chars > 3_000_000
    # The 3 MB line is never held whole: memory stays a small fraction of the output.
    assert peak < sink.chars / 4, (peak, sink.chars)


# ------------------------------------------------------------ export under writers


def _lines_are_consistent(exported: str) -> list[dict[str, Any]]:
    """Each line's counter agrees with its messages, and positions are 1..n."""
    lines = [json.loads(x) for x in exported.splitlines()]
    for line in lines:
        assert line["message_count"] == len(line["messages"]), line["id"]
        assert [m["position"] for m in line["messages"]] == list(
            range(1, len(line["messages"]) + 1)
        )
    return lines


def test_export_is_one_snapshot_while_writes_land(store: Store, db_url: str) -> None:
    """Writes from another connection between two lines are not in the export."""
    ids = [
        store.create_conversation(
            f"user{i % 2}", messages=[{"role": "user", "content": f"c{i}"}] * (i + 1)
        ).id
        for i in range(6)
    ]
    before = {i: store.get_conversation(f"user{n % 2}", i).message_count for n, i in enumerate(ids)}

    lines_written = 0

    def write_meanwhile(total: int) -> None:
        nonlocal lines_written
        if total == -1:
            lines_written += 1
            # An export that is not one snapshot would see the new conversations and
            # never end: fail instead of hanging.
            assert lines_written <= len(ids), "the export saw conversations created after it began"
        # After each line: every conversation grows, and a new one appears.
        for n, cid in enumerate(ids):
            store.append_message(f"user{n % 2}", cid, {"role": "assistant", "content": "late"})
        store.create_conversation("user0", messages=[{"role": "user", "content": "new"}])

    out = io.StringIO()
    with Store(db_url) as exporter:  # its own engine: the writes above use other connections
        export_jsonl(exporter.engine, out, batch_size=2, progress=write_meanwhile)
    lines = _lines_are_consistent(out.getvalue())
    assert {line["id"]: line["message_count"] for line in lines} == before
    assert all(m["content"] != "late" for line in lines for m in line["messages"])
    # The writes themselves all landed.
    assert store.get_conversation("user1", ids[-1]).message_count == before[ids[-1]] + 7


def test_an_export_taken_under_concurrent_writers_restores_without_loss(
    store: Store, db_url: str, empty_db: Callable[[str], str], backend: str
) -> None:
    convs = [store.create_conversation(f"u{i % 3}") for i in range(9)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        with Store(db_url) as mine:
            n = 0
            while not stop.is_set() and n < 2_000:  # bounded: never a hang
                conv = convs[(k + n) % len(convs)]
                try:
                    mine.append_messages(
                        conv.user_id,
                        conv.id,
                        [
                            {"role": "user", "content": f"w{k}-{n}"},
                            {"role": "assistant", "content": "a"},
                        ],
                    )
                except BaseException as exc:  # surfaced below
                    errors.append(exc)
                    return
                n += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        with Store(db_url) as exporter:
            out = io.StringIO()
            # A few rounds, so that exports overlap many committed appends.
            for _ in range(3):
                out = io.StringIO()
                export_jsonl(exporter.engine, out, batch_size=3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    lines = _lines_are_consistent(out.getvalue())
    assert len(lines) == len(convs)
    target = make_engine(empty_db(backend))
    try:
        report = import_jsonl(target, out.getvalue().splitlines())
        assert report.skipped == []
        assert (report.imported, report.messages) == (
            len(lines),
            sum(len(line["messages"]) for line in lines),
        )
        assert [json.loads(x) for x in export_text(target).splitlines()] == lines
    finally:
        target.dispose()


@pytest.mark.parametrize(
    "target_backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_streamed_replies_are_exported_with_their_text_and_status(
    store: Store, empty_db: Callable[[str], str], target_backend: str
) -> None:
    conv = store.create_conversation("alice", messages=[{"role": "user", "content": "Q"}])
    done = store.begin_message("alice", conv.id, key="r1")
    store.append_delta("alice", done.id, 0, "complete answer")
    store.finish_message("alice", done.id)
    failed = store.begin_message("alice", conv.id)
    store.append_delta("alice", failed.id, 0, "half")
    store.fail_message("alice", failed.id)
    store.begin_message("alice", conv.id)  # still streaming, nothing received yet
    [line] = export_text(store.engine).splitlines()
    messages = json.loads(line)["messages"]
    assert [(m.get("status"), m["content"]) for m in messages] == [
        (None, "Q"),
        (None, "complete answer"),
        ("error", "half"),
        ("interrupted", ""),  # nobody will finish it in the copy
    ]
    target = make_engine(empty_db(target_backend))
    try:
        report = import_jsonl(target, [line])
        assert (report.imported, report.messages, report.skipped) == (1, 4, [])
        with Store(target) as copy:
            stored = copy.get_messages("alice", conv.id)
            assert [(m.status, m.content, m.key) for m in stored] == [
                ("complete", "Q", None),
                ("complete", "complete answer", "r1"),
                ("error", "half", None),
                ("interrupted", "", None),
            ]
            # The copy takes a new reply at once: nothing is left streaming there.
            assert copy.begin_message("alice", conv.id).position == 5
        streaming = json.loads(line)
        streaming["messages"][3]["status"] = "streaming"
        streaming["id"] = None
        streaming["messages"] = [{**m, "id": None} for m in streaming["messages"]]
        again = import_jsonl(target, [json.dumps(streaming)])
        assert again.imported == 1 and again.skipped == []
    finally:
        target.dispose()
