"""Importing ChatGPT, Claude and OpenAI Conversations exports, on both databases."""

from __future__ import annotations

import io
import json
import shutil
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from convostore import Store, importers
from convostore.importers import (
    ImportFormatError,
    SourceImportReport,
    detect_format,
    import_file,
    import_path,
    import_upload,
)
from convostore.io import export_jsonl

DATA = Path(__file__).parent / "data" / "imports"
CHATGPT = DATA / "chatgpt-conversations.json"
CLAUDE = DATA / "claude-conversations.json"
OPENAI = DATA / "openai-items.jsonl"
SPLIT = DATA / "chatgpt-split"

TRIP = "chatgpt:6790a1b2-0000-4000-8000-000000000001"


def by_id(report: SourceImportReport) -> dict[str | None, Any]:
    return {r.external_id: r for r in report.conversations}


def rows(store: Store, user: str, external_id: str) -> list[tuple[Any, ...]]:
    conv = store.get_conversation_by_external_id(user, external_id)
    return [
        (m.role, m.content, m.tool_calls, m.tool_call_id, m.key)
        for m in store.get_messages(user, conv.id)
    ]


def everything(store: Store) -> str:
    out = io.StringIO()
    export_jsonl(store.engine, out)
    return out.getvalue()


# ------------------------------------------------------------------------------ ChatGPT


def test_chatgpt_current_branch_only_hidden_skipped_tools_paired(store: Store) -> None:
    report = import_path(store.engine, CHATGPT, user_id="alice")
    assert report.format == "chatgpt"
    assert (report.imported, report.skipped, report.failed, report.messages) == (2, 0, 1, 8)
    trip = by_id(report)[TRIP]
    assert trip.status == "imported" and trip.title == "Trip to Ghent"
    call = {
        "id": "code",
        "type": "function",
        "function": {"name": "python", "arguments": "print(55/0.9)"},
    }
    assert rows(store, "alice", TRIP) == [
        # the image part is dropped (a label keeps its place); the hidden system node and
        # the custom-instructions node are skipped and their children re-attached
        ("user", "[image]\nWhere was this photo taken? Plan a day there.", None, None, "u1"),
        ("assistant", "That is the Graslei in Ghent. Morning: the Gravensteen.", None, None, "a1"),
        # the edited question (u2) and its answer, not the abandoned branch (u2-old)
        ("user", "How far is Bruges by train? Compute 55/0.9 minutes too.", None, None, "u2"),
        ("assistant", "", [call], None, "code"),
        ("tool", "61.111111111111114", None, "code", "out"),
        ("assistant", "About 25 minutes by train from Gent-Sint-Pieters.", None, None, "a3"),
    ]
    assert set(trip.notes) == {
        "hidden message(s) skipped",
        "custom instructions not imported",
        "1 non-text part(s) dropped (kept as labels)",
    }
    conv = store.get_conversation_by_external_id("alice", TRIP)
    assert conv.message_count == 6
    assert conv.metadata == {"source": "chatgpt", "model": "gpt-4o"}
    # original times: the conversation's and each message's
    assert conv.created_at == datetime.fromtimestamp(1735725600.123, tz=UTC)
    assert conv.updated_at == datetime.fromtimestamp(1735729200.5, tz=UTC)
    messages = store.get_messages("alice", conv.id)
    assert messages[0].created_at == datetime.fromtimestamp(1735725601, tz=UTC)
    assert messages[0].metadata == {"dropped": ["image_asset_pointer"]}
    assert messages[1].metadata == {"model": "gpt-4o"}
    assert [m.position for m in messages] == [1, 2, 3, 4, 5, 6]


def test_chatgpt_malformed_conversation_fails_alone_and_unknowns_are_reported(
    store: Store,
) -> None:
    report = import_path(store.engine, CHATGPT, user_id="alice")
    broken = by_id(report)["chatgpt:6790a1b2-0000-4000-8000-000000000002"]
    assert broken.status == "failed"
    assert broken.reason == "mapping: node 'gone' of the branch is missing"
    odd = by_id(report)["chatgpt:6790a1b2-0000-4000-8000-000000000003"]
    assert odd.status == "imported"
    assert set(odd.notes) == {
        "unknown content_type 'sparkle_text': kept its text",
        "assistant message(s) without model_slug",
    }
    assert [c.title for c in store.list_conversations("alice").data] == [
        "Odd content",
        "Trip to Ghent",
    ]


def test_reimport_skips_and_writes_nothing(store: Store) -> None:
    import_path(store.engine, CHATGPT, user_id="alice")
    before = everything(store)
    again = import_path(store.engine, CHATGPT, user_id="alice")
    assert (again.imported, again.skipped, again.failed) == (0, 2, 1)
    trip = by_id(again)[TRIP]
    first_id = store.get_conversation_by_external_id("alice", TRIP).id
    assert trip.reason == f"already imported as conversation {first_id}"
    assert trip.conversation_id == first_id
    assert everything(store) == before
    # another user imports the same export: theirs, separately
    bob = import_path(store.engine, CHATGPT, user_id="bob")
    assert bob.imported == 2


def test_dry_run_writes_nothing_and_reports_what_it_would_do(store: Store) -> None:
    before = everything(store)
    report = import_path(store.engine, CHATGPT, user_id="alice", dry_run=True)
    assert report.dry_run and (report.imported, report.failed, report.messages) == (2, 1, 8)
    assert "would import 2 conversation(s)" in report.summary()
    assert everything(store) == before
    import_path(store.engine, CHATGPT, user_id="alice")
    again = import_path(store.engine, CHATGPT, user_id="alice", dry_run=True)
    assert (again.imported, again.skipped) == (0, 2)


def test_split_files_folder_and_zip(store: Store, tmp_path: Path) -> None:
    folder = import_path(store.engine, SPLIT, user_id="alice")
    assert (folder.imported, folder.messages) == (3, 6)
    assert [r.source for r in folder.conversations] == [
        "conversations-000.json",
        "conversations-001.json",
        "conversations-001.json",
    ]
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("chat.html", "<html></html>")
        z.writestr("user.json", "{}")
        z.writestr("__MACOSX/conversations.json", "junk")
        for f in sorted(SPLIT.iterdir()):
            z.write(f, f"export/{f.name}")
    zipped = import_path(store.engine, archive, user_id="bob")
    assert (zipped.imported, zipped.messages, zipped.failed) == (3, 6, 0)
    with archive.open("rb") as upload:
        again = import_upload(store.engine, upload, user_id="bob", name="export.zip")
    assert (again.imported, again.skipped) == (0, 3)


def test_progress_reports_bytes(store: Store) -> None:
    seen: list[tuple[int, int]] = []
    import_path(store.engine, SPLIT, user_id="alice", progress=lambda d, t: seen.append((d, t)))
    total = sum(f.stat().st_size for f in SPLIT.iterdir())
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# ------------------------------------------------------------------------------- Claude


def test_claude_text_tools_attachments(store: Store) -> None:
    report = import_path(store.engine, CLAUDE, user_id="alice")
    assert report.format == "claude"
    assert (report.imported, report.skipped, report.failed) == (1, 1, 1)
    results = by_id(report)
    assert results["claude:0b5e9c4a-1111-4a2b-9c3d-000000000002"].reason == "no messages to import"
    assert results["claude:0b5e9c4a-1111-4a2b-9c3d-000000000003"].reason == (
        "chat_messages: must be a list"
    )
    call = {
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "web_search", "arguments": '{"query": "Ghent Bruges bike route"}'},
    }
    assert rows(store, "alice", "claude:0b5e9c4a-1111-4a2b-9c3d-000000000001") == [
        ("user", "Plan a bike route from Ghent to Bruges.\n[file: map.txt]", None, None, "c1-m1"),
        ("assistant", "Let me look that up.", [call], None, "c1-m2"),
        ("tool", "Follow the Brugse Vaart canal, 45 km.", None, "toolu_01", "c1-m2#1"),
        ("assistant", "Follow the canal path: about 45 km.", None, None, "c1-m2#2"),
        ("user", "Thanks!", None, None, "c1-m3"),
    ]
    conv = store.get_conversation_by_external_id(
        "alice", "claude:0b5e9c4a-1111-4a2b-9c3d-000000000001"
    )
    assert conv.title == "Bike route"
    assert conv.created_at == datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert "secret map" not in everything(store)  # attachment contents are not imported
    # the history for the model pairs the tool call with its result
    history = store.get_history("alice", conv.id)
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user"]


# ------------------------------------------------------------------------------- OpenAI


def test_openai_items_messages_calls_outputs_reasoning(store: Store) -> None:
    report = import_path(store.engine, OPENAI, user_id="alice")
    assert report.format == "openai"
    assert (report.imported, report.messages, report.failed) == (2, 8, 0)
    call = {
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Ghent"}'},
    }
    assert rows(store, "alice", "openai:conv_68a1weather") == [
        ("user", "Weather in Ghent?", None, None, "msg_001"),
        ("assistant", "", [call], None, "fc_001"),
        ("tool", '{"temp_c": 12, "sky": "rain"}', None, "call_w1", "fco_001"),
        ("assistant", "12 °C and rain.", None, None, "msg_002"),
        ("user", "And this picture?\n[image]", None, None, "msg_003"),
        ("assistant", "I cannot see images here.", None, None, "msg_004"),
    ]
    weather = by_id(report)["openai:conv_68a1weather"]
    assert set(weather.notes) == {
        "reasoning item(s) not imported",
        "1 non-text part(s) dropped (kept as labels)",
        "web_search_call item(s) skipped",
    }
    conv = store.get_conversation_by_external_id("alice", "openai:conv_68a1weather")
    assert conv.created_at == datetime.fromtimestamp(1741000000, tz=UTC)
    assert conv.metadata == {"source": "openai", "openai_metadata": {"topic": "weather"}}
    assert rows(store, "alice", "openai:conv_68a2second") == [
        ("user", "Second conversation", None, None, "msg_101"),
        ("assistant", "Hello again", None, None, "msg_102"),
    ]


def test_openai_file_per_conversation_takes_its_name(store: Store, tmp_path: Path) -> None:
    lines = [
        {
            "type": "message",
            "id": "m1",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        },
        {"type": "message", "id": "m2", "role": "assistant", "content": "hello"},
    ]
    path = tmp_path / "conv_abc123.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    report = import_path(store.engine, path, user_id="alice")
    assert [r.external_id for r in report.conversations] == ["openai:conv_abc123"]


# ------------------------------------------------------------------------------ failures


def test_invalid_message_fails_its_conversation_with_field_and_rule(
    store: Store, tmp_path: Path
) -> None:
    convs = json.loads(SPLIT.joinpath("conversations-001.json").read_text())
    convs[0]["mapping"]["m2"]["message"]["content"]["parts"] = ["x" * 10_001]
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(convs))
    report = import_path(store.engine, path, user_id="alice")
    failed = [r for r in report.conversations if r.status == "failed"]
    assert len(failed) == 1
    assert failed[0].reason == (
        "messages[1].content: must be at most 10000 characters (got 10001) (source message m2)"
    )
    assert report.imported == 1
    # nothing of the failed conversation was written
    assert [c.title for c in store.list_conversations("alice").data] == ["Split 3"]


def test_truncated_json_keeps_what_came_before(store: Store, tmp_path: Path) -> None:
    text = SPLIT.joinpath("conversations-001.json").read_text()
    path = tmp_path / "conversations.json"
    path.write_text(text[: text.index('"Split 3"') + 20])
    report = import_path(store.engine, path, user_id="alice")
    assert report.imported == 1 and report.failed == 1
    assert report.conversations[-1].reason is not None
    assert "not valid JSON" in report.conversations[-1].reason


def test_not_an_export_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(ImportFormatError, match="not a ChatGPT, Claude or OpenAI"):
        import_path(store.engine, path, user_id="alice")
    with pytest.raises(ImportFormatError, match="no such file"):
        import_path(store.engine, tmp_path / "missing.json", user_id="alice")
    with pytest.raises(ImportFormatError, match="format: must be auto"):
        import_path(store.engine, CHATGPT, user_id="alice", format="bard")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImportFormatError, match="no conversations.json"):
        import_path(store.engine, empty, user_id="alice")
    (tmp_path / "conversations.json").write_text("[]")
    assert import_path(store.engine, tmp_path / "conversations.json", user_id="a").imported == 0


def test_forced_format_mismatch_fails_conversations_not_the_process(store: Store) -> None:
    report = import_path(store.engine, CLAUDE, user_id="alice", format="chatgpt")
    assert report.imported == 0 and report.failed == 3
    assert {r.reason for r in report.conversations} == {"id: missing (no id or conversation_id)"}


def test_detect_format() -> None:
    assert detect_format(CHATGPT.read_bytes()[:300]) == "chatgpt"
    assert detect_format(CLAUDE.read_bytes()[:200]) == "claude"
    assert detect_format(OPENAI.read_bytes()) == "openai"
    assert detect_format(b'{"id": 1, "user_id": "a", "messages": []}\n') == "jsonl"
    assert detect_format(b"") is None
    assert detect_format(b"\x00\x01") is None


def test_non_seekable_stream(store: Store) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            chunk = self._data.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    report = import_file(store.engine, io.BufferedReader(Pipe(OPENAI.read_bytes())), user_id="a")
    assert report.imported == 2 and report.messages == 8
    stream = io.BufferedReader(Pipe(SPLIT.joinpath("conversations-001.json").read_bytes()))
    assert import_file(store.engine, stream, user_id="a").imported == 2


def test_folder_with_a_stray_file_reports_it(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(SPLIT, folder)
    (folder / "notes.jsonl").write_text("not json at all\n")
    report = import_path(store.engine, folder, user_id="alice")
    assert report.imported == 3
    assert [r.source for r in report.conversations if r.status == "failed"] == ["notes.jsonl"]


def test_concurrent_imports_of_one_export_store_each_conversation_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importers, "BATCH_CONVERSATIONS", 2)  # several batches per import
    convs = json.loads(SPLIT.joinpath("conversations-001.json").read_text())
    many = []
    for i in range(12):
        c = json.loads(json.dumps(convs[i % 2]))
        c["id"] = c["conversation_id"] = f"conv-{i}"
        many.append(c)
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(many))
    reports: list[SourceImportReport] = []
    threads = [
        threading.Thread(
            target=lambda: reports.append(import_path(store.engine, path, user_id="alice"))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.imported for r in reports) == 12
    assert sum(r.skipped for r in reports) == 24
    assert all(r.failed == 0 for r in reports)
    page = store.list_conversations("alice", limit=100)
    assert sorted(c.external_id or "" for c in page.data) == sorted(
        f"chatgpt:conv-{i}" for i in range(12)
    )
    assert all(c.message_count == 2 for c in page.data)


def test_a_failing_conversation_inside_a_batch_leaves_its_neighbours(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite's single writer: nothing can be created meanwhile")
    # The database rejects the middle conversation (its external id is taken by a
    # conversation created meanwhile, with no way to see it before the insert).
    real = importers._Writer._stored
    calls = {"n": 0}

    def blind(self: Any, conn: Any, external_id: str) -> Any:
        calls["n"] += 1
        if external_id.endswith("102") and calls["n"] == 2:
            store.create_conversation("alice", external_id=external_id, title="made meanwhile")
            return None
        return real(self, conn, external_id)

    monkeypatch.setattr(importers._Writer, "_stored", blind)
    report = import_path(store.engine, SPLIT, user_id="alice")
    statuses = {r.external_id: r.status for r in report.conversations}
    assert statuses == {
        "chatgpt:6790a1b2-0000-4000-8000-000000000101": "imported",
        "chatgpt:6790a1b2-0000-4000-8000-000000000102": "skipped",
        "chatgpt:6790a1b2-0000-4000-8000-000000000103": "imported",
    }
    titles = sorted(c.title or "" for c in store.list_conversations("alice").data)
    assert titles == ["Split 1", "Split 3", "made meanwhile"]


def test_chatgpt_without_current_node_follows_the_newest_children(
    store: Store, tmp_path: Path
) -> None:
    convs = json.loads(CHATGPT.read_text())
    trip = convs[0]
    del trip["current_node"]
    looped = json.loads(json.dumps(convs[2]))
    looped["id"] = "looped"
    del looped["current_node"]
    looped["mapping"]["b2"]["children"] = ["b1"]  # a cycle through the children links
    cyclic = json.loads(json.dumps(convs[2]))
    cyclic["id"] = "cyclic"
    cyclic["mapping"]["b0"]["parent"] = "b2"  # a cycle through the parent links
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([trip, looped, cyclic]))
    report = import_path(store.engine, path, user_id="alice")
    # the looping children end the walk (no hang); the looping parents fail that one alone
    assert [r.status for r in report.conversations] == ["imported", "imported", "failed"]
    keys = [row[-1] for row in rows(store, "alice", TRIP)]
    assert keys == ["u1", "a1", "u2", "code", "out", "a3"]  # the last child at each fork
    assert report.conversations[2].reason == (
        "mapping: the parent links form a cycle or are not ids"
    )
