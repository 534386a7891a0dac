"""The schema: SQLModel table models for ``users``, ``conversations`` and ``messages``.

    from convostore.models import User, Conversation, Message, MessageRole

The database itself enforces the contract, not only Python:

* ``messages (conversation_id, user_id)`` references ``conversations (id, user_id)``, so a
  message can never belong to a user other than its conversation's owner;
* every foreign key cascades on delete (conversation -> messages; user -> everything);
* ``(conversation_id, position)`` is unique: the order of a conversation never depends on
  clock ties, and positions are assigned atomically by the store (1, 2, 3, ... gapless);
* ``role`` is checked against the four roles of the chat format.

Indexes serve the hot queries: ``(user_id, updated_at, id)`` lists a user's recent
conversations in one ordered index scan; ``(conversation_id, position)`` reads a
conversation in order or its tail; ``(user_id, created_at)`` finds a user's messages.
These tables are written by :class:`convostore.Store`; validation of input lives in
:mod:`convostore.schemas` (SQLModel skips validators on table models).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlmodel import Field, SQLModel

from convostore.types import JSONType, UTCDateTime

__all__ = ["Conversation", "Message", "MessageRole", "User", "metadata"]

# BIGINT ids on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is the auto-assigned rowid.
IdType = BigInteger().with_variant(Integer(), "sqlite")

MAX_ID_LENGTH = 255
MAX_TITLE_LENGTH = 255


class MessageRole(StrEnum):
    """Who wrote a message, as in the OpenAI chat format."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


_ROLE_CHECK = "role IN ({})".format(", ".join(f"'{r.value}'" for r in MessageRole))


def _created_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(UTCDateTime(), nullable=False, server_default=func.now()),
    )


class User(SQLModel, table=True):
    """A user of the host application; registered by the store on first write."""

    __tablename__ = "users"

    id: str = Field(sa_column=Column(String(MAX_ID_LENGTH), primary_key=True))
    created_at: datetime | None = _created_at()


class Conversation(SQLModel, table=True):
    """A chat thread owned by one user."""

    __tablename__ = "conversations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_conversations_user_id"
        ),
        # Target of the messages' composite foreign key (owner consistency).
        UniqueConstraint("id", "user_id", name="uq_conversations_id_user_id"),
        Index("ix_conversations_user_id_updated_at", "user_id", "updated_at", "id"),
        # A host's own id for the thread (e.g. an Agents SDK session id), unique per user.
        Index(
            "uq_conversations_user_external_id",
            "user_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
            sqlite_where=text("external_id IS NOT NULL"),
        ),
        CheckConstraint("message_count >= 0", name="ck_conversations_message_count"),
        # Never reuse the id of a deleted conversation on SQLite (a stale client id must
        # not start pointing at a new thread).
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    user_id: str = Field(sa_column=Column(String(MAX_ID_LENGTH), nullable=False))
    title: str | None = Field(default=None, sa_column=Column(String(MAX_TITLE_LENGTH)))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSONType))
    external_id: str | None = Field(default=None, sa_column=Column(String(MAX_ID_LENGTH)))
    # Equals the highest position: positions are gapless because messages are only ever
    # removed from the tail (pop / delete-after), and it makes "next position" one UPDATE.
    message_count: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(UTCDateTime(), nullable=False, server_default=func.now()),
    )


class Message(SQLModel, table=True):
    """One chat message at a fixed position in its conversation."""

    __tablename__ = "messages"
    __table_args__ = (
        ForeignKeyConstraint(
            ["conversation_id", "user_id"],
            ["conversations.id", "conversations.user_id"],
            ondelete="CASCADE",
            name="fk_messages_conversation_owner",
        ),
        ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_messages_user_id"
        ),
        UniqueConstraint("conversation_id", "position", name="uq_messages_conversation_position"),
        Index("ix_messages_user_id_created_at", "user_id", "created_at"),
        # Idempotent appends: a client key is unique within its conversation.
        Index(
            "uq_messages_conversation_client_key",
            "conversation_id",
            "client_key",
            unique=True,
            postgresql_where=text("client_key IS NOT NULL"),
            sqlite_where=text("client_key IS NOT NULL"),
        ),
        CheckConstraint(_ROLE_CHECK, name="ck_messages_role"),
        CheckConstraint("position >= 1", name="ck_messages_position"),
        # Never hand out the id of a popped message again on SQLite.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    conversation_id: int = Field(sa_column=Column(IdType, nullable=False))
    user_id: str = Field(sa_column=Column(String(MAX_ID_LENGTH), nullable=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    role: str = Field(sa_column=Column(String(20), nullable=False))
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONType))
    tool_call_id: str | None = Field(default=None, sa_column=Column(String(MAX_ID_LENGTH)))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSONType))
    client_key: str | None = Field(default=None, sa_column=Column(String(MAX_ID_LENGTH)))
    created_at: datetime | None = _created_at()


#: The metadata holding convostore's three tables (what migrations are compared against).
metadata = SQLModel.metadata
users_table: Table = metadata.tables["users"]
conversations_table: Table = metadata.tables["conversations"]
messages_table: Table = metadata.tables["messages"]
