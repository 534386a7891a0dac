"""The schema: SQLModel table models for ``conversations`` and ``messages`` (and users).

    from convostore.models import Conversation, Message, MessageRole

**Users belong to the host app.** Set ``CONVOSTORE_USERS_TABLE`` (environment or ``.env``,
read when this module is imported) to the name of your app's users table: convostore then
defines no users table, and ``user_id`` references that table's ``id`` (taking its type)
with ``ON DELETE CASCADE``. Unset, convostore keeps a minimal ``convostore_users`` table of
its own, filled in by the database on a user's first conversation, so a never-seen user id
always works (``User`` is that table's model).

**The models are real models.** ``session.add(Message(conversation_id=..., role=...,
content=...))`` or a raw ``INSERT`` with only those columns works: the database assigns the
position, the owner and ``created_at`` and bumps the conversation, atomically, exactly as the
store's appends do (see :mod:`convostore._ddl`); the ORM also checks the store's validation
rules before anything is written.

The database itself enforces the contract, not only Python:

* ``messages (conversation_id, user_id)`` references ``conversations (id, user_id)``, so a
  message can never belong to a user other than its conversation's owner;
* every foreign key cascades on delete (conversation -> messages; user -> everything);
* ``(conversation_id, position)`` is unique: the order of a conversation never depends on
  clock ties, and positions are assigned atomically (1, 2, 3, ... gapless);
* ``role`` is checked against the four roles of the chat format.

Indexes serve the hot queries: ``(user_id, updated_at, id)`` lists a user's recent
conversations in one ordered index scan; ``(conversation_id, position)`` reads a
conversation in order or its tail; ``(user_id, created_at)`` finds a user's messages.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    FetchedValue,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    false,
    func,
    text,
)
from sqlmodel import Field, SQLModel

from convostore import _ddl
from convostore.config import get_settings
from convostore.types import JSONType, UTCDateTime

__all__ = [
    "ApiKey",
    "Conversation",
    "Message",
    "MessageChunk",
    "MessageRole",
    "MessageStatus",
    "RetentionPolicy",
    "Tombstone",
    "metadata",
    "schema_metadata",
]

#: The host app's users table (``CONVOSTORE_USERS_TABLE``), or ``None``: convostore's own.
HOST_USERS_TABLE: str | None = get_settings().users_table
#: The table every ``user_id`` references.
USERS_TABLE: str = HOST_USERS_TABLE or _ddl.OWN_USERS_TABLE
OWNS_USERS: bool = HOST_USERS_TABLE is None

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


class MessageStatus(StrEnum):
    """Where a message is in its life: most are ``complete`` from the start; a streamed
    reply is ``streaming`` until its writer finishes (``complete``), gives up (``error``) or
    stops sending for longer than the lease (``interrupted``)."""

    COMPLETE = "complete"
    STREAMING = "streaming"
    INTERRUPTED = "interrupted"
    ERROR = "error"


_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s.value}'" for s in MessageStatus))


def _created_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(UTCDateTime(), nullable=False, server_default=func.now()),
    )


if OWNS_USERS:

    class User(SQLModel, table=True):
        """A user id seen by convostore (standalone only); registered on first write."""

        __tablename__ = _ddl.OWN_USERS_TABLE

        id: str = Field(sa_column=Column(String(MAX_ID_LENGTH), primary_key=True))
        created_at: datetime | None = _created_at()

    __all__ += ["User"]


def _user_id_column() -> Any:
    # No type of its own: SQLAlchemy copies the referenced users.id type (String(255) of
    # convostore's table, or whatever the host's id is) once that table is defined, which
    # a host may do before or after importing this module.
    return Column(nullable=False, server_default=FetchedValue())


class Conversation(SQLModel, table=True):
    """A chat thread owned by one user."""

    __tablename__ = "conversations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id"], [f"{USERS_TABLE}.id"], ondelete="CASCADE", name="fk_conversations_user_id"
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
        # The purge's queue: only conversations that can expire, so it never scans live data.
        Index(
            "ix_conversations_expires_at",
            "expires_at",
            postgresql_where=text(_ddl.EXPIRING),
            sqlite_where=text(_ddl.EXPIRING),
        ),
        # Never reuse the id of a deleted conversation on SQLite (a stale client id must
        # not start pointing at a new thread).
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    # Typeless: takes the type of the users table's id (see _user_id_column).
    user_id: str = Field(sa_column=Column(nullable=False))
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
    # Retention (migration 0005): gone for readers once past ``expires_at`` unless on hold;
    # every append moves it to the last activity + ``retention_seconds``.
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    retention_seconds: int | None = Field(default=None, sa_column=Column(BigInteger))
    temporary: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    hold: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
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
            ["user_id"], [f"{USERS_TABLE}.id"], ondelete="CASCADE", name="fk_messages_user_id"
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
        CheckConstraint(_STATUS_CHECK, name="ck_messages_status"),
        # At most one reply streams into a conversation at a time (a partial index:
        # nothing to maintain for the complete messages, i.e. almost all rows).
        Index(
            "uq_messages_one_streaming",
            "conversation_id",
            unique=True,
            postgresql_where=text("status = 'streaming'"),
            sqlite_where=text("status = 'streaming'"),
        ),
        # Never hand out the id of a popped message again on SQLite.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    conversation_id: int = Field(sa_column=Column(IdType, nullable=False))
    # Left out (None), these are filled in by the database (or, on SQLite's ORM path, by
    # convostore.orm) from the conversation, under its lock; FetchedValue makes the ORM
    # omit them from the INSERT and read them back.
    user_id: str = Field(default=None, sa_column=_user_id_column())
    position: int = Field(
        default=None, sa_column=Column(Integer, nullable=False, server_default=FetchedValue())
    )
    role: str = Field(sa_column=Column(String(20), nullable=False))
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONType))
    tool_call_id: str | None = Field(default=None, sa_column=Column(String(MAX_ID_LENGTH)))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSONType))
    client_key: str | None = Field(default=None, sa_column=Column(String(MAX_ID_LENGTH)))
    # No DDL default: NULL tells the trigger to assign a time that never ties (a default
    # would be indistinguishable from a caller's explicit value).
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(UTCDateTime(), nullable=False, server_default=FetchedValue()),
    )
    status: str = Field(
        default=MessageStatus.COMPLETE.value,
        sa_column=Column(String(20), nullable=False, server_default=text("'complete'")),
    )
    # The streaming writer's lease: renewed by every delta. A ``streaming`` message whose
    # lease is older than CONVOSTORE_STREAM_LEASE_SECONDS reads as ``interrupted``.
    stream_heartbeat_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class MessageChunk(SQLModel, table=True):
    """One delta of a streamed reply, stored once per ``(message_id, seq)``.

    While the reply streams, the message's ``content`` is its chunks joined in ``seq``
    order. Chunks stay as long as their message (for readers that resume after a ``seq``,
    even once the reply has ended): they cost about the reply's size again.
    """

    __tablename__ = "message_chunks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["message_id"], ["messages.id"], ondelete="CASCADE", name="fk_message_chunks_message_id"
        ),
        CheckConstraint("seq >= 0", name="ck_message_chunks_seq"),
    )

    message_id: int = Field(sa_column=Column(IdType, primary_key=True))
    seq: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # The message's owner, as on every table: the tenant (and shard) key of every query.
    user_id: str = Field(sa_column=Column(String(MAX_ID_LENGTH), nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = _created_at()


API_KEYS_TABLE = "convostore_api_keys"


class ApiKey(SQLModel, table=True):
    """A service credential for the REST API (``convostore keys create``).

    Only the SHA-256 of the key is stored (the key is 256 random bits, so a fast hash is
    enough: there is nothing to brute-force); ``prefix`` is its first characters, to tell
    keys apart in listings. ``user_id``: the user the key acts as by default;
    ``can_act_for_users``: it may name any user per request (``X-Convostore-User``).
    """

    __tablename__ = API_KEYS_TABLE
    __table_args__ = (
        Index("uq_convostore_api_keys_key_hash", "key_hash", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    label: str = Field(sa_column=Column(String(MAX_TITLE_LENGTH), nullable=False))
    user_id: str | None = Field(default=None, sa_column=Column(String(MAX_ID_LENGTH)))
    can_act_for_users: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    created_at: datetime | None = _created_at()
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class RetentionPolicy(SQLModel, table=True):
    """A user's own retention defaults (convostore's table, never the host's users table).

    ``None`` inherits the global default (``CONVOSTORE_RETENTION`` /
    ``CONVOSTORE_TEMPORARY_RETENTION``); ``"none"`` is "never expires".
    """

    __tablename__ = "convostore_retention_policies"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id"],
            [f"{USERS_TABLE}.id"],
            ondelete="CASCADE",
            name="fk_convostore_retention_policies_user_id",
        ),
    )

    user_id: str = Field(sa_column=Column(primary_key=True))
    retention: str | None = Field(default=None, sa_column=Column(String(32)))
    temporary_retention: str | None = Field(default=None, sa_column=Column(String(32)))


class Tombstone(SQLModel, table=True):
    """A content-free record of a conversation the purge deleted (for compliance).

    No foreign keys: a tombstone outlives its conversation and its user.
    """

    __tablename__ = "convostore_tombstones"
    __table_args__ = (
        Index("ix_convostore_tombstones_user_id", "user_id"),
        Index("ix_convostore_tombstones_deleted_at", "deleted_at"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, sa_column=Column(IdType, primary_key=True))
    conversation_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    user_id: str = Field(sa_column=Column(String(MAX_ID_LENGTH), nullable=False))
    deleted_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    #: ``expired`` or ``temporary``.
    reason: str = Field(sa_column=Column(String(20), nullable=False))


#: The metadata holding convostore's tables (what migrations are compared against).
metadata = SQLModel.metadata
conversations_table: Table = metadata.tables["conversations"]
messages_table: Table = metadata.tables["messages"]
api_keys_table: Table = metadata.tables[API_KEYS_TABLE]
chunks_table: Table = metadata.tables["message_chunks"]
#: convostore's own users table; ``None`` when the host's is used.
users_table: Table | None = metadata.tables[_ddl.OWN_USERS_TABLE] if OWNS_USERS else None
policies_table: Table = metadata.tables["convostore_retention_policies"]
tombstones_table: Table = metadata.tables["convostore_tombstones"]


def schema_metadata(conn: Any) -> MetaData:
    """convostore's tables in a metadata whose foreign keys all resolve (for comparisons).

    With the host's users table, the host's model may not be imported (``convostore db
    check`` from the command line): its table is then reflected from ``conn`` into a
    private copy, never into the shared ``SQLModel.metadata``.
    """
    if OWNS_USERS or USERS_TABLE in metadata.tables:
        return metadata
    copy = MetaData()
    Table(USERS_TABLE, copy, autoload_with=conn)
    for table in (
        conversations_table,
        messages_table,
        chunks_table,
        api_keys_table,
        policies_table,
        tombstones_table,
    ):
        table.to_metadata(copy)
    return copy


def _create_triggers(target: Table, connection: Any, **kw: Any) -> None:
    dialect = connection.dialect.name
    statements = _ddl.create_statements(dialect, own_users=OWNS_USERS)
    # The full-text index (migration 0003): a column and index outside the models on
    # PostgreSQL, FTS5 tables on SQLite.
    statements += _ddl.search_create_statements(dialect, config=get_settings().search_config)
    for statement in statements:
        connection.execute(text(statement))


def _drop_functions(target: Table, connection: Any, **kw: Any) -> None:
    # Triggers go with their tables; PostgreSQL's trigger functions would stay behind.
    for statement in _ddl.drop_statements(connection.dialect.name):
        if statement.startswith("DROP FUNCTION"):
            connection.execute(text(statement))
    if connection.dialect.name == "sqlite":
        # FTS5 tables are tables of their own: they outlive the one they index.
        for statement in _ddl.search_drop_statements("sqlite"):
            connection.execute(text(statement))


# ``SQLModel.metadata.create_all`` creates the same working schema as the migrations.
event.listen(messages_table, "after_create", _create_triggers)
event.listen(messages_table, "after_drop", _drop_functions)
