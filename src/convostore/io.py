"""Export and import conversations as JSON Lines, and database statistics.

    from convostore.db import make_engine
    from convostore.io import export_jsonl, import_jsonl

    with open("backup.jsonl", "w", encoding="utf-8") as out:
        export_jsonl(make_engine("sqlite:///chat.db"), out)          # every user
    with open("backup.jsonl", encoding="utf-8") as lines:
        report = import_jsonl(make_engine("postgresql://..."), lines)

One line is one conversation with all of its messages::

    {"id": 7, "user_id": "alice", "user_created_at": "...", "title": "Trip",
     "metadata": {...}, "external_id": null, "message_count": 2, "created_at": "...",
     "updated_at": "...",
     "messages": [{"id": 31, "position": 1, "role": "user", "content": "Hi",
                   "tool_calls": null, "tool_call_id": null, "metadata": null,
                   "key": null, "created_at": "..."}, ...]}

Export streams in constant memory: conversations and messages are read by keyset pages
inside one read transaction (a consistent snapshot), and each line is written piece by
piece, so even a very long conversation is never held whole. Import is all-or-nothing per
conversation (one transaction each) and reproduces ids, timestamps, positions and keys
exactly; a line that is invalid or collides with stored data is skipped with the reason.
Re-running an import that was interrupted (killed, a lost connection) resumes it: the
conversations it already stored are counted as ``already_present`` and left alone.

Streamed replies: a message that is not ``complete`` carries ``"status"`` (absent means
complete) with the text it had. A reply still streaming at export time is exported as
``"interrupted"`` (an imported copy has no writer to finish it); its deltas are not
exported (its ``content`` is their text). Import stores the status as given (a
``"streaming"`` one as ``interrupted``); such a message may have empty content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from convostore import _sql
from convostore.config import get_settings
from convostore.db import WRITE_OPTION
from convostore.errors import ValidationError
from convostore.schemas import (
    MessageCreate,
    validate_id,
    validate_message,
    validate_metadata,
    validate_partial_message,
    validate_title,
    validate_user_id,
)
from convostore.types import utcnow

__all__ = [
    "DatabaseStats",
    "ImportReport",
    "Skipped",
    "database_stats",
    "export_jsonl",
    "import_jsonl",
]

EXPORT_BATCH = 500


class Writer(Protocol):
    """Anything with ``write(str)``: a text file, ``sys.stdout``, a ``StringIO``."""

    def write(self, text: str, /) -> object: ...


def _iso(value: datetime) -> str:
    return value.isoformat()


# Characters that some line splitters (e.g. Python's str.splitlines) treat as line breaks
# and that json.dumps leaves raw: escaped, so one line is always one conversation.
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def _escape_break(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _dump(value: Any) -> str:
    """Compact UTF-8 JSON on one line."""
    return _LINE_BREAKS.sub(
        _escape_break, json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    )


def _message_json(row: Any) -> str:
    message = {
        "id": row.id,
        "position": row.position,
        "role": row.role,
        "content": row.content,
        "tool_calls": row.tool_calls,
        "tool_call_id": row.tool_call_id,
        "metadata": row.metadata,
        "key": row.client_key,
        "created_at": _iso(row.created_at),
    }
    if row.status != "complete":
        # Nobody will finish a reply in the copy: a live one is exported as interrupted.
        message["status"] = "error" if row.status == "error" else "interrupted"
    return _dump(message)


def _conversations(
    conn: Connection, user_id: str | None, batch: int, now: datetime
) -> Iterator[Any]:
    after: int | None = None
    while True:
        rows = conn.execute(_sql.export_conversations(user_id, after, batch, now)).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].id


def _messages(
    conn: Connection, user_id: str, conversation_id: int, batch: int, now: datetime
) -> Iterator[Any]:
    after: int | None = None
    while True:
        stmt, params = _sql.messages_params(user_id, conversation_id, now, after=after, limit=batch)
        rows = conn.execute(stmt, params).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].position


def export_jsonl(
    engine: Engine,
    out: Writer,
    *,
    user_id: str | None = None,
    batch_size: int = EXPORT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``user_id``'s (default: everyone's) conversations to ``out``; returns how many.

    ``progress(total)`` is called once with the number of conversations to export, then
    ``progress(-1)`` after each one written (a hook for progress bars).
    """
    if user_id is not None:
        validate_user_id(user_id)
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"  # one snapshot for the whole export
    written = 0
    now = utcnow()  # expired conversations are gone: not exported
    with engine.execution_options(**options).begin() as conn:
        if progress is not None:
            progress(int(conn.execute(_sql.count_conversations(user_id, now)).scalar_one()))
        for conv in _conversations(conn, user_id, batch_size, now):
            head = {
                "id": conv.id,
                "user_id": conv.user_id,
                "user_created_at": _iso(conv.user_created_at),
                "title": conv.title,
                "metadata": conv.metadata,
                "external_id": conv.external_id,
                "message_count": conv.message_count,
                "created_at": _iso(conv.created_at),
                "updated_at": _iso(conv.updated_at),
            }
            out.write(_dump(head)[:-1] + ',"messages":[')
            for i, msg in enumerate(_messages(conn, conv.user_id, conv.id, batch_size, now)):
                out.write("," if i else "")
                out.write(_message_json(msg))
            out.write("]}\n")
            written += 1
            if progress is not None:
                progress(-1)
    return written


# --------------------------------------------------------------------------- import


class ExportedMessage(BaseModel):
    """One message of an exported conversation (validated again by the store's rules)."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = Field(default=None, ge=1)
    position: int = Field(ge=1)
    role: str
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    metadata: dict[str, Any] | None = None
    key: str | None = None
    created_at: AwareDatetime
    #: Absent for a complete message; a ``streaming`` one is stored as ``interrupted``.
    status: Literal["complete", "streaming", "interrupted", "error"] = "complete"


class ExportedConversation(BaseModel):
    """One line of an export."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = Field(default=None, ge=1)
    user_id: str
    user_created_at: AwareDatetime | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None
    external_id: str | None = None
    message_count: int | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    messages: list[ExportedMessage] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line that was not imported, and why."""

    line: int
    conversation_id: int | None
    reason: str


@dataclass(slots=True)
class ImportReport:
    """What an import did: conversations and messages written, lines skipped."""

    imported: int = 0
    messages: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    #: Conversations already stored by an earlier run of the same import (a resumed
    #: import after a crash): left as they are, and not an error.
    already_present: int = 0


def _pydantic_reason(exc: PydanticValidationError) -> str:
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    return f"{loc or 'line'}: {err['msg']}"


def _check(conv: ExportedConversation, max_content_length: int) -> list[MessageCreate]:
    """Apply the store's validation rules, plus the export's own invariants."""
    validate_user_id(conv.user_id)
    validate_title(conv.title)
    validate_metadata(conv.metadata)
    if conv.external_id is not None:
        validate_id(conv.external_id, "external_id")
    checked = []
    for i, m in enumerate(conv.messages):
        if m.position != i + 1:
            raise ValidationError(
                f"messages[{i}].position", f"must be {i + 1} (positions are 1, 2, 3, ...)"
            )
        item = m.model_dump(include=set(MessageCreate.model_fields))
        validate = validate_message if m.status == "complete" else validate_partial_message
        checked.append(
            validate(item, max_content_length=max_content_length, field=f"messages[{i}]")
        )
    keys = [m.key for m in checked if m.key is not None]
    if len(keys) != len(set(keys)):
        raise ValidationError("messages.key", "must be unique within the conversation")
    with_ids = sum(m.id is not None for m in conv.messages)
    if with_ids not in (0, len(conv.messages)):
        raise ValidationError("messages.id", "must be given for all messages or for none")
    if conv.message_count is not None and conv.message_count != len(conv.messages):
        raise ValidationError(
            "message_count", f"is {conv.message_count} but the line has {len(conv.messages)}"
        )
    return checked


def _insert(conn: Connection, conv: ExportedConversation, keep_ids: bool) -> int:
    pg = conn.dialect.name == "postgresql"
    user_created = conv.user_created_at or conv.created_at
    # The owner's first-seen time, kept in convostore's own users table (if it has one).
    if (register := _sql.upsert_user(pg, conv.user_id, user_created)) is not None:
        conn.execute(register)
    values: dict[str, Any] = {
        "user_id": conv.user_id,
        "title": conv.title,
        "metadata": conv.metadata,
        "external_id": conv.external_id,
        "message_count": len(conv.messages),
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
    }
    if keep_ids and conv.id is not None:
        stored = conn.execute(_sql.conversation_exists(conv.id)).first()
        if stored is not None:
            # Each conversation commits whole, so one with this id, owner and creation
            # time was written by an earlier run of this import: resume past it.
            if stored.user_id == conv.user_id and stored.created_at == conv.created_at:
                raise _AlreadyImported
            raise _Collision(f"conversation id {conv.id} already exists")
        values["id"] = conv.id
    if conv.external_id is not None:
        taken = {"uid": conv.user_id, "external_id": conv.external_id}
        if conn.execute(_sql.CONVERSATION_BY_EXTERNAL_ID, taken).first() is not None:
            raise _Collision(f"external_id {conv.external_id!r} is already used by this user")
    new_id = int(conn.execute(_sql.import_conversation(values)).scalar_one())
    if conv.messages:
        rows = []
        for m in conv.messages:
            row = {
                "conversation_id": new_id,
                "user_id": conv.user_id,
                "position": m.position,
                "role": m.role,
                "content": m.content,
                "tool_calls": m.tool_calls,
                "tool_call_id": m.tool_call_id,
                "metadata": m.metadata,
                "client_key": m.key,
                "created_at": m.created_at,
                "status": "interrupted" if m.status == "streaming" else m.status,
            }
            if keep_ids and m.id is not None:
                row["id"] = m.id
            rows.append(row)
        conn.execute(_sql.import_messages(), rows)
    if pg and keep_ids:
        # In the same transaction as the rows: an import killed midway never leaves the
        # sequences behind the ids it stored (later creates would collide with them).
        message_ids = [m.id for m in conv.messages if m.id is not None]
        for stmt, top in zip(
            _sql.pg_advance_id_sequences(), (new_id, max(message_ids, default=0)), strict=True
        ):
            if top:
                conn.execute(stmt, {"top": top})
    return new_id


class _Collision(Exception):
    """The line collides with stored data (skipped, not an error of the whole import)."""


class _AlreadyImported(Exception):
    """The line's conversation was stored by an earlier run of the same import."""


def import_jsonl(
    engine: Engine,
    lines: Iterable[str],
    *,
    keep_ids: bool = True,
    max_content_length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import an export, one transaction per conversation; returns what was done and skipped.

    ``keep_ids``: insert the exported conversation and message ids (a conversation whose
    id is taken is skipped); otherwise the database assigns new ids. ``progress(n)`` is
    called with the number of characters consumed after each line.
    """
    limit = max_content_length or get_settings().max_content_length
    report = ImportReport()
    writer = engine.execution_options(**{WRITE_OPTION: True})
    for number, line in enumerate(lines, start=1):
        if progress is not None:
            progress(len(line))
        if not line.strip():
            continue
        conv_id: int | None = None
        try:
            raw = json.loads(line)
            if isinstance(raw, dict) and isinstance(raw.get("id"), int):
                conv_id = raw["id"]
            conv = ExportedConversation.model_validate(raw)
            _check(conv, limit)
            with writer.begin() as conn:
                _insert(conn, conv, keep_ids)
        except json.JSONDecodeError as exc:
            report.skipped.append(Skipped(number, None, f"not valid JSON ({exc.msg})"))
        except PydanticValidationError as exc:
            report.skipped.append(Skipped(number, conv_id, _pydantic_reason(exc)))
        except ValidationError as exc:
            report.skipped.append(Skipped(number, conv_id, exc.message))
        except _AlreadyImported:
            report.already_present += 1
        except _Collision as exc:
            report.skipped.append(Skipped(number, conv_id, str(exc)))
        except (sa_exc.IntegrityError, sa_exc.DataError) as exc:
            detail = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            report.skipped.append(Skipped(number, conv_id, f"rejected by the database: {detail}"))
        else:
            report.imported += 1
            report.messages += len(conv.messages)
    return report


# ---------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    """Row counts, and bytes per table where the database can tell (else ``None``)."""

    backend: str
    users: int
    conversations: int
    messages: int
    table_bytes: dict[str, int | None]
    database_bytes: int | None


def database_stats(engine: Engine) -> DatabaseStats:
    """Count users, conversations and messages; measure table sizes where possible."""
    sizes: dict[str, int | None] = dict.fromkeys(("users", "conversations", "messages"))
    total: int | None = None
    with engine.connect() as conn:
        counts = conn.execute(_sql.table_counts()).one()
        if engine.dialect.name == "postgresql":
            sizes.update({t: int(b) for t, b in conn.execute(_sql.pg_table_sizes())})
            total = int(conn.execute(_sql.pg_database_size()).scalar_one())
        else:
            try:
                sizes.update({t: int(b) for t, b in conn.execute(_sql.sqlite_table_sizes())})
            except sa_exc.OperationalError:
                pass  # this SQLite was built without the dbstat virtual table
            page_count = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            total = int(page_count) * int(page_size)
    return DatabaseStats(
        backend=engine.dialect.name,
        users=int(counts.users),
        conversations=int(counts.conversations),
        messages=int(counts.messages),
        table_bytes=sizes,
        database_bytes=total,
    )
