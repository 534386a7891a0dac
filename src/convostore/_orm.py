"""The ORM half of "the models are real models": validation, and SQLite's fill-in.

A host app's ``session.add(Message(...))`` is checked against the same rules as the store's
appends (:func:`convostore.schemas.validate_message`) before anything is written; a broken
rule raises :class:`~convostore.errors.ValidationError` from ``flush``/``commit`` and the
session rolls the flush back. On PostgreSQL the database trigger then assigns the position,
owner and ``created_at``; on SQLite (whose triggers cannot change the row being inserted
and still let the ORM read its id back) the same assignment happens here, in the flush's
own transaction, with the statement the store's SQLite append uses.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper

from convostore.config import get_settings
from convostore.schemas import validate_message, validate_metadata, validate_title
from convostore.types import utcnow

__all__ = ["install"]


def _validate_message(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    checked = validate_message(
        {
            "role": target.role,
            "content": "" if target.content is None else target.content,
            "tool_calls": target.tool_calls,
            "tool_call_id": target.tool_call_id,
            "metadata": target.meta,
            "key": target.client_key,
        },
        max_content_length=get_settings().max_content_length,
    )
    # A MessageRole member is stored as its plain value on every driver.
    target.role = checked.role.value


def _fill_in_sqlite(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    if connection.dialect.name != "sqlite":
        return
    if target.position is not None:
        # Placed by the caller: only the time is left to fill in, as the trigger would.
        if target.created_at is None:
            target.created_at = utcnow()
        return
    from convostore import _sql  # the SQL module imports the models: import it late

    params = {"cid": target.conversation_id, "uid": target.user_id, "n": 1, "now": utcnow()}
    row = connection.execute(_sql.SQLITE_BUMP_CONVERSATION, {**params, "auto_title": None}).first()
    if row is None:
        # What the trigger (and PostgreSQL) answer: the conversation's foreign key fails.
        raise sa_exc.IntegrityError(
            "INSERT INTO messages",
            params,
            sqlite3.IntegrityError(
                f"FOREIGN KEY constraint failed: no conversation {target.conversation_id}"
                " of this user"
            ),
        )
    target.position, target.user_id, last = row
    if target.created_at is None:
        target.created_at = last


def _validate_conversation(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    target.title = validate_title(target.title)
    validate_metadata(target.meta)


def install() -> None:
    """Register the events on convostore's models (idempotent)."""
    from convostore.models import Conversation, Message

    hooks = [
        (Message, "before_insert", _validate_message),
        (Message, "before_update", _validate_message),
        (Message, "before_insert", _fill_in_sqlite),  # after validation: nothing bumped
        (Conversation, "before_insert", _validate_conversation),
        (Conversation, "before_update", _validate_conversation),
    ]
    for cls, name, hook in hooks:
        if not event.contains(cls, name, hook):
            event.listen(cls, name, hook)
