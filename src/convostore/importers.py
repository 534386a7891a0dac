"""Import other services' exports: ChatGPT, Claude, OpenAI Conversations items.

    from convostore.db import make_engine
    from convostore.importers import import_path

    report = import_path(make_engine(), "chatgpt-export.zip", user_id="alice")
    print(report.imported, report.skipped, report.failed)
    for result in report.conversations:
        print(result.status, result.external_id, result.reason or "", result.notes)

``path`` is a file, a folder or a ``.zip`` as the services hand them out. The format is
detected from the content (``format="auto"``) or given: ``chatgpt`` (``conversations.json``,
also split as ``conversations-000.json``, ...), ``claude`` (``conversations.json`` with
``chat_messages``), ``openai`` (JSON Lines of Conversations API items). convostore's own
JSON Lines export goes through :func:`convostore.io.import_jsonl` instead.

Memory stays bounded at any file size: the JSON is streamed with ``ijson`` and only one
conversation is held at a time. Each conversation is written all-or-nothing through the
same path as :func:`convostore.io.import_jsonl` (the store's validation rules, original
timestamps, positions in source order), with ``external_id`` ``chatgpt:<id>``,
``claude:<uuid>`` or ``openai:<conversation id>``: a conversation already imported is
skipped, so re-running an import never duplicates anything. A conversation that breaks a
rule is ``failed`` with the reason (field and rule); nothing of it is written.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import ijson
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from convostore import _sql
from convostore.config import get_settings
from convostore.db import WRITE_OPTION, sqlite_write_lock
from convostore.errors import ValidationError
from convostore.io import ExportedConversation, _check, _Collision, _insert, _pydantic_reason
from convostore.items import content_text, item_chat_form, part_text, shorten
from convostore.models import MAX_ID_LENGTH, MAX_TITLE_LENGTH
from convostore.schemas import validate_user_id

__all__ = [
    "FORMATS",
    "ConversationResult",
    "SourceImportReport",
    "detect_format",
    "import_file",
    "import_path",
    "import_upload",
]

Format = Literal["chatgpt", "claude", "openai"]
#: The formats :func:`import_path` reads (``auto`` detects one of them from the content).
FORMATS: tuple[str, ...] = ("chatgpt", "claude", "openai")
Status = Literal["imported", "skipped", "failed"]
Progress = Callable[[int, int], None]

#: How much of a file format detection looks at.
_HEAD_BYTES = 256 * 1024
_CONVERSATION_FILES = re.compile(r"conversations(?:[-_]\d+)?\.json$", re.IGNORECASE)
_JSONL_FILES = re.compile(r"\.(?:jsonl|ndjson)$", re.IGNORECASE)


class ImportFormatError(ValidationError):
    """The input is not an export of a known format (nothing was imported)."""


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class ConversationResult:
    """What happened to one conversation of the source."""

    status: Status
    external_id: str | None
    title: str | None = None
    #: Messages written (``imported``), or that a dry run would write.
    messages: int = 0
    #: The stored conversation's id (imported, or already there when skipped).
    conversation_id: int | None = None
    reason: str | None = None
    #: What was dropped or guessed, e.g. ``"1 image part(s) dropped"``.
    notes: tuple[str, ...] = ()
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "external_id": self.external_id,
            "title": self.title,
            "messages": self.messages,
            "conversation_id": self.conversation_id,
            "reason": self.reason,
            "notes": list(self.notes),
            "source": self.source,
        }


@dataclass(slots=True)
class SourceImportReport:
    """Per conversation imported / skipped / failed, and the totals."""

    format: str | None = None
    dry_run: bool = False
    conversations: list[ConversationResult] = field(default_factory=list)
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    #: Messages written (or, in a dry run, that would be written).
    messages: int = 0

    @property
    def ok(self) -> bool:
        """Nothing failed (skips are not failures)."""
        return self.failed == 0

    def add(self, result: ConversationResult) -> None:
        self.conversations.append(result)
        if result.status == "imported":
            self.imported += 1
            self.messages += result.messages
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        return (
            f"{verb} {self.imported} conversation(s), {self.messages} message(s); "
            f"skipped {self.skipped}; failed {self.failed}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dry_run": self.dry_run,
            "summary": {
                "imported": self.imported,
                "skipped": self.skipped,
                "failed": self.failed,
                "messages": self.messages,
            },
            "conversations": [r.to_dict() for r in self.conversations],
        }


# ---------------------------------------------------------------- parsed conversations


@dataclass(slots=True)
class _Conversation:
    """One conversation converted to convostore's shape, not yet validated."""

    external_id: str
    title: str | None
    created_at: datetime | None
    updated_at: datetime | None
    metadata: dict[str, Any] | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def add(self, message: dict[str, Any], when: datetime | None) -> None:
        """Append a message; a missing time is the previous message's (or the conversation's)."""
        if when is None:
            when = self.messages[-1]["created_at"] if self.messages else self.created_at
        message["created_at"] = when
        key = message.get("key")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_ID_LENGTH:
            message.pop("key", None)
        self.messages.append(message)


@dataclass(frozen=True, slots=True)
class _Broken:
    """A conversation that cannot be converted at all."""

    external_id: str | None
    title: str | None
    reason: str


class _Malformed(Exception):
    """The conversation's structure is broken (it fails; the import goes on)."""


def _time(value: Any) -> datetime | None:
    """Unix seconds (ChatGPT, OpenAI) or ISO 8601 (Claude) as aware UTC; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _title(value: Any, notes: Counter[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    title = " ".join(value.split())
    if len(title) > MAX_TITLE_LENGTH:
        notes[f"title cut to {MAX_TITLE_LENGTH} characters"] += 1
        title = title[: MAX_TITLE_LENGTH - 1].rstrip() + "\u2026"
    return title


def _source_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# ---------------------------------------------------------------------------- ChatGPT

#: ChatGPT content types whose text is the ``text`` field.
_CHATGPT_TEXT_FIELD = {"code", "execution_output", "system_error"}
#: Content types that are not conversation text: skipped with a note.
_CHATGPT_SKIPPED = {
    "user_editable_context": "custom instructions",
    "model_editable_context": "model memory",
    "thoughts": "reasoning",
    "reasoning_recap": "reasoning",
}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _chatgpt_branch(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The nodes of the branch the user last saw, root first: ``current_node`` back to the
    root through ``parent`` links (edited or regenerated branches are left out)."""
    mapping = raw.get("mapping")
    if not isinstance(mapping, Mapping):
        raise _Malformed("mapping: must be an object of nodes")
    current = raw.get("current_node")
    if current is None:
        # No current node recorded: follow the newest child from the root.
        roots = [n for n in mapping.values() if isinstance(n, Mapping) and not n.get("parent")]
        node = roots[0] if roots else None
        for _ in range(len(mapping)):  # bounded: children links may form a cycle
            children = node.get("children") if isinstance(node, Mapping) else None
            if not isinstance(children, list) or not children:
                break
            child = mapping.get(children[-1]) if isinstance(children[-1], str) else None
            if not isinstance(child, Mapping):
                break
            node = child
        current = node.get("id") if isinstance(node, Mapping) else None
        if current is None:
            return []
    path: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    node_id: Any = current
    while node_id is not None:
        if not isinstance(node_id, str) or node_id in seen:
            raise _Malformed("mapping: the parent links form a cycle or are not ids")
        seen.add(node_id)
        node = mapping.get(node_id)
        if not isinstance(node, Mapping):
            raise _Malformed(f"mapping: node {shorten(node_id, 60)!r} of the branch is missing")
        path.append(node)
        node_id = node.get("parent")
    path.reverse()
    return path


def _chatgpt_text(content: Mapping[str, Any], notes: Counter[str]) -> tuple[str, list[str]]:
    """The text of a message's content, and the kinds of parts dropped from it."""
    kind = content.get("content_type")
    dropped: list[str] = []
    if kind in _CHATGPT_TEXT_FIELD:
        text = content.get("text")
        if kind == "system_error" and isinstance(content.get("name"), str):
            text = f"{content['name']}: {text or ''}"
        return (text if isinstance(text, str) else ""), dropped
    if kind == "tether_browsing_display":
        for key in ("result", "summary"):
            if isinstance(content.get(key), str) and content[key].strip():
                return content[key], dropped
        return "", dropped
    if kind == "tether_quote":
        pieces = [content.get(k) for k in ("title", "url", "text")]
        return "\n".join(p for p in pieces if isinstance(p, str) and p), dropped
    parts = content.get("parts")
    if kind not in ("text", "multimodal_text"):
        text_field = content.get("text")
        if isinstance(text_field, str) and text_field.strip():
            notes[f"unknown content_type {kind!r}: kept its text"] += 1
            return text_field, dropped
        if not isinstance(parts, list) or not any(isinstance(p, str) for p in parts):
            notes[f"unknown content_type {kind!r}: message skipped"] += 1
            return "", ["unknown"]
        notes[f"unknown content_type {kind!r}: kept its text parts"] += 1
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, str):
            if part:
                texts.append(part)
            continue
        if isinstance(part, Mapping):
            ptype = str(part.get("content_type") or part.get("type") or "part")
            if ptype == "audio_transcription" and isinstance(part.get("text"), str):
                texts.append(part["text"])
                continue
            label = "[image]" if "image" in ptype else "[audio]" if "audio" in ptype else None
            texts.append(label or f"[{ptype}]")
            dropped.append(ptype)
    return "\n".join(texts), dropped


def _chatgpt_conversation(raw: Any) -> _Conversation:
    if not isinstance(raw, Mapping):
        raise _Malformed("not a JSON object")
    source_id = _source_id(raw.get("conversation_id")) or _source_id(raw.get("id"))
    if source_id is None:
        raise _Malformed("id: missing (no id or conversation_id)")
    notes: Counter[str] = Counter()
    metadata: dict[str, Any] = {"source": "chatgpt"}
    if isinstance(raw.get("default_model_slug"), str):
        metadata["model"] = raw["default_model_slug"]
    conv = _Conversation(
        external_id=f"chatgpt:{source_id}",
        title=_title(raw.get("title"), notes),
        created_at=_time(raw.get("create_time")),
        updated_at=_time(raw.get("update_time")),
        metadata=metadata,
        notes=notes,
    )
    pending_call: str | None = None  # the assistant's last call to a tool, answered next
    for node in _chatgpt_branch(raw):
        msg = node.get("message")
        if not isinstance(msg, Mapping):
            continue  # the root, or a node without a message: its children follow anyway
        author = _mapping(msg.get("author"))
        role = author.get("role")
        meta = _mapping(msg.get("metadata"))
        content = _mapping(msg.get("content"))
        kind = content.get("content_type")
        if kind in _CHATGPT_SKIPPED:
            notes[f"{_CHATGPT_SKIPPED[kind]} not imported"] += 1
            continue
        if meta.get("is_visually_hidden_from_conversation") is True:
            notes["hidden message(s) skipped"] += 1
            continue
        text, dropped = _chatgpt_text(content, notes)
        if dropped == ["unknown"]:
            continue
        if dropped:
            notes[f"{len(dropped)} non-text part(s) dropped (kept as labels)"] += 1
        key = _source_id(msg.get("id")) or _source_id(node.get("id"))
        when = _time(msg.get("create_time"))
        extra: dict[str, Any] = {}
        if dropped:
            extra["dropped"] = dropped
        recipient = msg.get("recipient")
        if role == "system":
            if not text.strip():
                continue  # ChatGPT's empty system preamble
            row: dict[str, Any] = {"role": "system", "content": text}
        elif role == "user":
            pending_call = None
            row = {"role": "user", "content": text}
        elif role == "assistant":
            slug = meta.get("model_slug")
            if isinstance(slug, str) and slug:
                extra["model"] = slug
            else:
                notes["assistant message(s) without model_slug"] += 1
            if isinstance(recipient, str) and recipient not in ("all", ""):
                # A call to a tool (python, browser, dalle...): the text is its input.
                call_id = key or f"call_{len(conv.messages) + 1}"
                function = {"name": recipient, "arguments": text}
                row = {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": call_id, "type": "function", "function": function}],
                }
                pending_call = call_id
            else:
                pending_call = None
                if not text.strip():
                    notes["empty message(s) skipped"] += 1
                    continue
                row = {"role": "assistant", "content": text}
        elif role == "tool":
            name = author.get("name") if isinstance(author.get("name"), str) else "tool"
            if not text.strip():
                text = f"[{name}: no text output]"
            if pending_call is not None:
                row = {"role": "tool", "content": text, "tool_call_id": pending_call}
            else:
                notes["tool output(s) without a call kept as assistant text"] += 1
                row = {"role": "assistant", "content": f"[{name}] {text}"}
        else:
            notes[f"message(s) with role {shorten(str(role), 40)!r} skipped"] += 1
            continue
        if key is not None:
            row["key"] = key
        if extra:
            row["metadata"] = extra
        conv.add(row, when)
    return conv


# ----------------------------------------------------------------------------- Claude

_CLAUDE_ROLES = {"human": "user", "user": "user", "assistant": "assistant"}


def _claude_message(conv: _Conversation, msg: Any, index: int) -> None:
    notes = conv.notes
    if not isinstance(msg, Mapping):
        raise _Malformed(f"chat_messages[{index}]: not a JSON object")
    role = _CLAUDE_ROLES.get(str(msg.get("sender")))
    if role is None:
        notes[f"message(s) from sender {shorten(str(msg.get('sender')), 40)!r} skipped"] += 1
        return
    uuid = _source_id(msg.get("uuid"))
    when = _time(msg.get("created_at"))
    labels = []
    for group in ("attachments", "files"):
        for item in msg.get(group) or ():
            if isinstance(item, Mapping):
                name = item.get("file_name") or item.get("file_uuid") or "file"
                labels.append(f"[file: {name}]")
    if labels:
        notes["attachment(s) kept as labels, their contents not imported"] += len(labels)
    segment = 0

    def emit(row: dict[str, Any]) -> None:
        nonlocal segment
        if uuid is not None:
            row["key"] = uuid if segment == 0 else f"{uuid}#{segment}"
        segment += 1
        conv.add(row, when)

    blocks = msg.get("content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    last_call: str | None = None

    def flush() -> None:
        body = "\n\n".join(t for t in texts if t.strip())
        if role == "user" and labels and segment == 0:
            body = "\n".join(x for x in (body, *labels) if x)
        if calls and role == "assistant":
            emit({"role": "assistant", "content": body, "tool_calls": list(calls)})
        elif body.strip():
            emit({"role": role, "content": body})
        texts.clear()
        calls.clear()

    if isinstance(blocks, list) and blocks:
        for i, block in enumerate(blocks):
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if kind == "text":
                if isinstance(block.get("text"), str):
                    texts.append(block["text"])
            elif kind == "tool_use" and role == "assistant":
                call_id = _source_id(block.get("id")) or f"{uuid or 'call'}:{i}"
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                name = str(block.get("name") or "tool")
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                )
                last_call = call_id
            elif kind == "tool_result":
                answered = _source_id(block.get("tool_use_id")) or last_call
                output = content_text(block.get("content")) or "[no output]"
                if answered is None:
                    texts.append(f"[tool result] {output}")
                    notes["tool result(s) without a call kept as text"] += 1
                    continue
                flush()
                emit({"role": "tool", "content": output, "tool_call_id": answered})
            elif kind in ("thinking", "redacted_thinking"):
                notes["reasoning not imported"] += 1
            else:
                text = part_text(block)
                if text:
                    texts.append(text)
                notes[f"content block(s) of type {shorten(str(kind), 40)!r} dropped"] += 1
        flush()
    else:
        plain = msg.get("text")
        if isinstance(plain, str):
            texts.append(plain)
        flush()
    if segment == 0:
        notes["empty message(s) skipped"] += 1


def _claude_conversation(raw: Any) -> _Conversation:
    if not isinstance(raw, Mapping):
        raise _Malformed("not a JSON object")
    source_id = _source_id(raw.get("uuid"))
    if source_id is None:
        raise _Malformed("uuid: missing")
    notes: Counter[str] = Counter()
    conv = _Conversation(
        external_id=f"claude:{source_id}",
        title=_title(raw.get("name"), notes),
        created_at=_time(raw.get("created_at")),
        updated_at=_time(raw.get("updated_at")),
        metadata={"source": "claude"},
        notes=notes,
    )
    messages = raw.get("chat_messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise _Malformed("chat_messages: must be a list")
    for i, msg in enumerate(messages):
        _claude_message(conv, msg, i)
    return conv


# ----------------------------------------------------------------------------- OpenAI

_OPENAI_CHAT_ITEMS = {
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
}
_OPENAI_ROLES = {"user", "assistant", "system", "developer"}
#: Stream names that are no file name, so no conversation id either.
_UNNAMED = {"upload", "stdin"}


def _openai_item(conv: _Conversation, item: Any) -> None:
    notes = conv.notes
    if not isinstance(item, Mapping):
        raise _Malformed("an item is not a JSON object")
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "reasoning":
        notes["reasoning item(s) not imported"] += 1
        return
    if kind not in _OPENAI_CHAT_ITEMS:
        notes[f"{shorten(str(kind), 40)} item(s) skipped"] += 1
        return
    if kind == "message" and item.get("role") not in _OPENAI_ROLES:
        notes[f"message(s) with role {shorten(str(item.get('role')), 40)!r} skipped"] += 1
        return
    content = item.get("content")
    if isinstance(content, list):
        media = [
            p
            for p in content
            if isinstance(p, Mapping)
            and p.get("type")
            not in ("input_text", "output_text", "text", "refusal", "summary_text")
        ]
        if media:
            notes[f"{len(media)} non-text part(s) dropped (kept as labels)"] += 1
    row = item_chat_form(item)
    if row["role"] == "assistant" and not row.get("tool_calls") and kind != "message":
        notes[f"{kind} item(s) without a call_id skipped"] += 1
        return
    key = _source_id(item.get("id"))
    if key is not None:
        row["key"] = key
    conv.add(row, _time(item.get("created_at")))


def _openai_conversations(stream: IO[bytes], name: str) -> Iterator[_Conversation | _Broken]:
    """Conversations from JSON Lines: a ``{"object": "conversation", "id": ...}`` line starts
    one; items (one a line, or ``{"object": "list", "data": [...]}`` pages) follow in order.
    An item's ``conversation_id`` (if any) also starts a new conversation when it changes;
    without either, the file's name (``conv_123.jsonl``) is the conversation id."""
    current: _Conversation | None = None
    broken: str | None = None

    def start(conv_id: str, created: datetime | None, meta: Any) -> _Conversation:
        metadata: dict[str, Any] = {"source": "openai"}
        if isinstance(meta, Mapping) and meta:
            metadata["openai_metadata"] = dict(meta)
        return _Conversation(
            external_id=f"openai:{conv_id}",
            title=None,
            created_at=created,
            updated_at=None,
            metadata=metadata,
        )

    def finish() -> Iterator[_Conversation | _Broken]:
        if current is not None:
            if broken is not None:
                yield _Broken(current.external_id, None, broken)
            else:
                yield current

    stem = PurePosixPath(name).stem
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            reason = f"line {number}: not valid JSON ({shorten(str(exc), 80)})"
            if current is None:
                yield _Broken(None, None, f"{name}: {reason}")
            else:
                broken = broken or reason
            continue
        if not isinstance(raw, Mapping):
            broken = broken or f"line {number}: not a JSON object"
            continue
        obj = raw.get("object")
        if obj == "conversation":
            yield from finish()
            conv_id = _source_id(raw.get("id"))
            if conv_id is None:
                yield _Broken(None, None, f"{name}: line {number}: conversation without an id")
                current, broken = None, None
                continue
            current = start(conv_id, _time(raw.get("created_at")), raw.get("metadata"))
            broken = None
            continue
        items = raw.get("data") if obj == "list" else [raw]
        if not isinstance(items, list):
            broken = broken or f"line {number}: data: must be a list of items"
            continue
        for item in items:
            owner = _source_id(item.get("conversation_id")) if isinstance(item, Mapping) else None
            if owner is not None and (current is None or current.external_id != f"openai:{owner}"):
                yield from finish()
                current, broken = start(owner, None, None), None
            if current is None:
                current, broken = start(stem, None, None), None
                if name in _UNNAMED:
                    broken = (
                        "no conversation id: start with an "
                        '{"object": "conversation", "id": ...} line, give each item a '
                        '"conversation_id", or name the file <conversation id>.jsonl'
                    )
            try:
                _openai_item(current, item)
            except _Malformed as exc:
                broken = broken or f"line {number}: {exc}"
    yield from finish()


# ------------------------------------------------------------------------ the sources


@dataclass(frozen=True, slots=True)
class _Source:
    """One file to read: on disk, or a member of a zip archive."""

    name: str
    size: int
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]


class _Counting:
    """A binary reader that reports the bytes it hands out (for the progress bar)."""

    def __init__(self, raw: IO[bytes], seen: Callable[[int], None]) -> None:
        self._raw = raw
        self._seen = seen

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._seen(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self._raw:
            self._seen(len(line))
            yield line


def _wanted(name: str) -> bool:
    pure = PurePosixPath(name)
    if "__MACOSX" in pure.parts or pure.name.startswith("."):
        return False
    return bool(_CONVERSATION_FILES.search(pure.name) or _JSONL_FILES.search(pure.name))


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _sources(path: Path, stack: contextlib.ExitStack) -> list[_Source]:
    """The files of an export: the file itself, or the conversation files of a folder/zip."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and _wanted(str(p.relative_to(path)))
        )
        return [_Source(str(p.relative_to(path)), p.stat().st_size, _opener(p)) for p in files]
    if not path.is_file():
        raise ImportFormatError("path", f"{path}: no such file or folder")
    if zipfile.is_zipfile(path):
        return _zip_sources(path, path.name, stack)
    return [_Source(path.name, path.stat().st_size, _opener(path))]


def _zip_sources(
    archive_file: Path | IO[bytes], name: str, stack: contextlib.ExitStack
) -> list[_Source]:
    """The conversation files inside a zip (``conversations*.json``, ``*.jsonl``)."""
    try:
        archive = stack.enter_context(zipfile.ZipFile(archive_file))
        members = sorted(
            (m for m in archive.infolist() if not m.is_dir() and _wanted(m.filename)),
            key=lambda m: m.filename,
        )
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFormatError("body", f"{name}: not a readable zip ({exc})") from None
    if not members:
        raise ImportFormatError("body", f"{name}: no conversations.json or .jsonl file in this zip")
    return [_Source(m.filename, m.file_size, _member(archive, m)) for m in members]


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: archive.open(info)


def _top_keys(head: bytes) -> tuple[str, set[str]]:
    """The container (``array``/``object``) and the first object's keys, from a prefix."""
    keys: set[str] = set()
    container = ""
    try:
        for prefix, event, value in ijson.parse(head):
            if not container:
                container = "array" if event == "start_array" else "object"
                continue
            item_prefix = "item" if container == "array" else ""
            if prefix == item_prefix and event == "map_key":
                keys.add(value)
            elif prefix == item_prefix and event == "end_map":
                break
            if container == "array" and prefix == "" and event == "end_array":
                break
    except ijson.JSONError:
        pass  # the head ends mid-document: the keys seen so far decide
    return container, keys


def detect_format(head: bytes) -> str | None:
    """``chatgpt``, ``claude``, ``openai`` or ``jsonl`` (convostore's own), from a file's
    first bytes; ``None`` when it is none of them (or an empty export)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        return None
    if text.startswith(b"{"):
        first = text.split(b"\n", 1)[0]
        container, keys = _top_keys(first if b"\n" in text else text)
        if {"user_id", "messages"} <= keys:
            return "jsonl"
        if "mapping" in keys:
            return "chatgpt"
        if "chat_messages" in keys:
            return "claude"
        if keys & {"object", "type", "role", "call_id"}:
            return "openai"
        return None
    if text.startswith(b"["):
        _, keys = _top_keys(text)
        # The deciding key may lie past the head in a very large first conversation: the
        # keys that come first in each service's export decide then.
        if keys & {"mapping", "current_node", "create_time"}:
            return "chatgpt"
        if "chat_messages" in keys or {"uuid", "name"} <= keys:
            return "claude"
    return None


def _parse(fmt: str, stream: IO[bytes], name: str, top: str) -> Iterator[_Conversation | _Broken]:
    if fmt == "openai":
        yield from _openai_conversations(stream, name)
        return
    convert = _chatgpt_conversation if fmt == "chatgpt" else _claude_conversation
    for raw in ijson.items(stream, "item" if top == "array" else "", use_float=True):
        try:
            yield convert(raw)
        except _Malformed as exc:
            ident = (
                _source_id(raw.get("conversation_id") or raw.get("id") or raw.get("uuid"))
                if isinstance(raw, Mapping)
                else None
            )
            title = raw.get("title") or raw.get("name") if isinstance(raw, Mapping) else None
            external = f"{fmt}:{ident}" if ident else None
            yield _Broken(external, title if isinstance(title, str) else None, str(exc))


# ----------------------------------------------------------------------------- writing


def _failed_field(exc: ValidationError, conv: _Conversation) -> str:
    """The rule broken, naming the source message for ``messages[i]`` fields."""
    match = re.match(r"messages\[(\d+)\]", exc.field)
    if match and int(match.group(1)) < len(conv.messages):
        key = conv.messages[int(match.group(1))].get("key")
        if key:
            return f"{exc.message} (source message {key})"
    return exc.message


#: A batch of conversations commits after this many conversations or seconds, whichever
#: comes first: each conversation is all-or-nothing in its own savepoint, and one commit
#: (one fsync) covers many. A crash loses at most the open batch; a re-run imports it.
BATCH_CONVERSATIONS = 100
BATCH_SECONDS = 0.25


class _Writer:
    """Validates and stores converted conversations: a savepoint each, batched commits."""

    def __init__(self, engine: Engine, user_id: str, dry_run: bool, limit: int) -> None:
        self.engine = engine
        self.user_id = user_id
        self.dry_run = dry_run
        self.limit = limit
        self.writer = engine.execution_options(**{WRITE_OPTION: True})
        self.lock = sqlite_write_lock(engine)
        self.now = datetime.now(UTC)
        self._conn: Connection | None = None
        self._started = 0.0
        self._pending = 0

    def __call__(self, conv: _Conversation, source: str) -> ConversationResult:
        notes = tuple(f"{n}x {what}" if n > 1 else what for what, n in conv.notes.items())
        base: dict[str, Any] = {
            "external_id": conv.external_id,
            "title": conv.title,
            "notes": notes,
            "source": source,
        }
        if not conv.messages:
            return ConversationResult("skipped", reason="no messages to import", **base)
        times = [m["created_at"] for m in conv.messages if m["created_at"] is not None]
        created = conv.created_at or (min(times) if times else self.now)
        last = max(times, default=created)
        updated = max(conv.updated_at or last, last, created)
        for m in conv.messages:
            if m["created_at"] is None:
                m["created_at"] = created
        try:
            exported = ExportedConversation.model_validate(
                {
                    "user_id": self.user_id,
                    "title": conv.title,
                    "metadata": conv.metadata,
                    "external_id": conv.external_id,
                    "created_at": created,
                    "updated_at": updated,
                    "messages": [{"position": i, **m} for i, m in enumerate(conv.messages, 1)],
                }
            )
            _check(exported, self.limit)
        except PydanticValidationError as exc:
            return ConversationResult("failed", reason=_pydantic_reason(exc), **base)
        except ValidationError as exc:
            return ConversationResult("failed", reason=_failed_field(exc, conv), **base)
        count = len(exported.messages)
        if self.dry_run:
            with self.engine.connect() as conn:
                stored, new_id = self._stored(conn, conv.external_id), None
        else:
            conn = self._batch()
            try:
                # A savepoint per conversation: all-or-nothing each, one commit per batch.
                with conn.begin_nested():
                    stored = self._stored(conn, conv.external_id)
                    new_id = None if stored is not None else _insert(conn, exported, False)
            except (sa_exc.IntegrityError, sa_exc.DataError, _Collision) as exc:
                stored = self._stored(conn, conv.external_id)  # a concurrent import won
                if stored is None:
                    orig = getattr(exc, "orig", None)
                    detail = str(orig or exc).splitlines()[0]
                    return ConversationResult(
                        "failed", reason=f"rejected by the database: {detail}", **base
                    )
            self._pending += 1
            if (
                self._pending >= BATCH_CONVERSATIONS
                or time.monotonic() - self._started > BATCH_SECONDS
            ):
                self.commit()
        if stored is not None:
            reason = f"already imported as conversation {stored.id}"
            if count > stored.message_count:
                reason += (
                    f" ({stored.message_count} messages stored, the source now has {count}; "
                    "delete it and import again to refresh it)"
                )
            return ConversationResult(
                "skipped", conversation_id=int(stored.id), reason=reason, **base
            )
        return ConversationResult("imported", messages=count, conversation_id=new_id, **base)

    def _batch(self) -> Connection:
        """The open write transaction, begun (with the SQLite write lock) if there is none."""
        if self._conn is None:
            if self.lock is not None:
                self.lock.acquire()
            try:
                self._conn = self.writer.connect()
                self._conn.begin()
            except BaseException:
                self._release()
                raise
            self._started = time.monotonic()
            self._pending = 0
        return self._conn

    def commit(self) -> None:
        """Commit the batch (its conversations are then durable) and release the lock."""
        if self._conn is not None:
            try:
                self._conn.commit()
            finally:
                self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()  # rolls back whatever was not committed
        finally:
            if self.lock is not None and self.lock.locked():
                self.lock.release()

    @property
    def idle(self) -> bool:
        """No batch is open: every result so far is committed."""
        return self._conn is None

    def rollback(self) -> None:
        """Give up the open batch (on an error that stops the import)."""
        self._release()

    def _stored(self, conn: Connection, external_id: str) -> Any:
        params = {"uid": self.user_id, "external_id": external_id}
        return conn.execute(_sql.CONVERSATION_BY_EXTERNAL_ID, params).first()


def import_file(
    engine: Engine,
    stream: IO[bytes],
    *,
    user_id: str,
    name: str = "upload",
    format: str = "auto",
    dry_run: bool = False,
    max_content_length: int | None = None,
    report: SourceImportReport | None = None,
    progress: Callable[[int], None] | None = None,
) -> SourceImportReport:
    """Import one export file from a binary ``stream`` (a zip needs :func:`import_path`)."""
    validate_user_id(user_id)
    report = report if report is not None else SourceImportReport(dry_run=dry_run)
    limit = max_content_length or get_settings().max_content_length
    write = _Writer(engine, user_id, dry_run, limit)
    seekable = getattr(stream, "seekable", lambda: False)()
    head = stream.read(_HEAD_BYTES)
    fmt = detect_format(head) if format == "auto" else format
    if fmt == "jsonl":
        raise ImportFormatError(
            "format", f"{name}: a convostore JSON Lines export; import it with format jsonl"
        )
    if fmt is None:
        if not head.strip(b" \t\r\n[]"):
            return report  # an empty export
        raise ImportFormatError(
            "format", f"{name}: not a ChatGPT, Claude or OpenAI Conversations export"
        )
    if fmt not in FORMATS:
        raise ImportFormatError("format", f"must be auto, {', '.join(FORMATS)} (got {fmt!r})")
    report.format = report.format if report.format not in (None, fmt) else fmt
    if seekable:
        stream.seek(0)
        body: IO[bytes] = stream
    else:
        body = _Chained(head, stream)  # type: ignore[assignment]
    top = "object" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "array"
    counted: Any = _Counting(body, progress) if progress is not None else body
    results: list[ConversationResult] = []  # reported once their batch has committed
    try:
        for item in _parse(fmt, counted, name, top):
            if isinstance(item, _Broken):
                results.append(
                    ConversationResult(
                        "failed", item.external_id, item.title, reason=item.reason, source=name
                    )
                )
            else:
                results.append(write(item, name))
            if write.idle:
                _flush(report, results)
    except ijson.JSONError as exc:
        reason = f"{name}: not valid JSON ({shorten(str(exc), 120)}); the rest of it was not read"
        results.append(ConversationResult("failed", None, reason=reason, source=name))
    except BaseException:
        write.rollback()  # the open batch is not reported: it was not stored
        raise
    write.commit()
    _flush(report, results)
    return report


def _flush(report: SourceImportReport, results: list[ConversationResult]) -> None:
    for result in results:
        report.add(result)
    results.clear()


class _Chained:
    """``head`` followed by the rest of a non-seekable stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                data, self._head = self._head, b""
                return data + (
                    self._rest.read(n - len(data)) if n > 0 else self._rest.read() if n < 0 else b""
                )
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._rest.read(n)

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        while chunk := self.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending


@contextlib.contextmanager
def _reported(report: SourceImportReport, name: str, several: bool) -> Iterator[None]:
    """In a folder or zip, a file that is not an export fails alone; the others go on."""
    try:
        yield
    except ImportFormatError as exc:
        if not several:
            raise
        report.add(ConversationResult("failed", None, reason=exc.rule, source=name))


def import_path(
    engine: Engine,
    path: str | Path,
    *,
    user_id: str,
    format: str = "auto",
    dry_run: bool = False,
    max_content_length: int | None = None,
    progress: Progress | None = None,
) -> SourceImportReport:
    """Import a ChatGPT / Claude / OpenAI export (a file, a folder or a ``.zip``) for
    ``user_id``; one transaction per conversation. ``dry_run``: convert and validate
    everything, write nothing. ``progress(done_bytes, total_bytes)`` is called as it reads.
    """
    validate_user_id(user_id)
    if format != "auto" and format not in FORMATS:
        raise ImportFormatError("format", f"must be auto, {', '.join(FORMATS)} (got {format!r})")
    with contextlib.ExitStack() as stack:
        sources = _sources(Path(path), stack)
        if not sources:
            raise ImportFormatError(
                "path", f"{path}: no conversations.json or .jsonl file in this folder"
            )
        return _import_sources(
            engine, sources, user_id, format, dry_run, max_content_length, progress
        )


def import_upload(
    engine: Engine,
    stream: IO[bytes],
    *,
    user_id: str,
    name: str = "upload",
    format: str = "auto",
    dry_run: bool = False,
    max_content_length: int | None = None,
) -> SourceImportReport:
    """Import an uploaded export held in a seekable binary file: a zip, or one export file."""
    validate_user_id(user_id)
    if format != "auto" and format not in FORMATS:
        raise ImportFormatError("format", f"must be auto, {', '.join(FORMATS)} (got {format!r})")
    if not zipfile.is_zipfile(stream):
        stream.seek(0)
        return import_file(
            engine,
            stream,
            user_id=user_id,
            name=name,
            format=format,
            dry_run=dry_run,
            max_content_length=max_content_length,
        )
    with contextlib.ExitStack() as stack:
        sources = _zip_sources(stream, name, stack)
        return _import_sources(engine, sources, user_id, format, dry_run, max_content_length, None)


def _import_sources(
    engine: Engine,
    sources: list[_Source],
    user_id: str,
    format: str,
    dry_run: bool,
    max_content_length: int | None,
    progress: Progress | None,
) -> SourceImportReport:
    report = SourceImportReport(dry_run=dry_run)
    total = sum(s.size for s in sources)
    done = 0

    def seen(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for source in sources:
        with source.open() as raw, _reported(report, source.name, len(sources) > 1):
            import_file(
                engine,
                raw,
                user_id=user_id,
                name=source.name,
                format=format,
                dry_run=dry_run,
                max_content_length=max_content_length,
                report=report,
                progress=seen,
            )
    return report
