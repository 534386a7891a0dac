"""Streamed replies: a message status, the writer's lease, and the deltas' table.

* ``messages.status`` (``complete`` for every existing row, ``streaming``,
  ``interrupted``, ``error``) and ``messages.stream_heartbeat_at`` (the lease);
* ``uq_messages_one_streaming``: at most one reply streams into a conversation at a time
  (a partial unique index, empty for complete messages);
* ``message_chunks (message_id, seq)``: the deltas, deleted with their message.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from convostore import _ddl
from convostore.config import get_settings
from convostore.models import OWNS_USERS

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
_STATUS_CHECK = "status IN ('complete', 'streaming', 'interrupted', 'error')"
_STREAMING = sa.text("status = 'streaming'")


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def _recreate_sqlite_triggers(*, streaming: bool) -> None:
    """A rebuilt ``messages`` table has lost its triggers: convostore's own, and the
    full-text index's (0003, in its layout before 0007), which also re-indexes the copied
    rows."""
    for statement in _ddl.create_statements("sqlite", own_users=OWNS_USERS, streaming=streaming):
        op.execute(sa.text(statement))
    config = get_settings().search_config
    statements = _ddl.search_create_statements(
        "sqlite", config=config, scoped=False, when_changed=False
    )
    for statement in statements:
        op.execute(sa.text(statement))


def upgrade() -> None:
    status = sa.Column(
        "status", sa.String(20), nullable=False, server_default=sa.text("'complete'")
    )
    heartbeat = sa.Column("stream_heartbeat_at", TS, nullable=True)
    if _sqlite():
        # A named table CHECK needs a rebuild on SQLite (AUTOINCREMENT kept, as in 0002);
        # the rebuild drops the table's triggers, which are then created again.
        with op.batch_alter_table(
            "messages", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.add_column(status)
            batch.add_column(heartbeat)
            batch.create_check_constraint("ck_messages_status", _STATUS_CHECK)
        _recreate_sqlite_triggers(streaming=True)
    else:
        # A constant default: PostgreSQL adds the column without rewriting the table.
        op.add_column("messages", status)
        op.add_column("messages", heartbeat)
        op.create_check_constraint("ck_messages_status", "messages", _STATUS_CHECK)
    op.create_index(
        "uq_messages_one_streaming",
        "messages",
        ["conversation_id"],
        unique=True,
        postgresql_where=_STREAMING,
        sqlite_where=_STREAMING,
    )
    op.create_table(
        "message_chunks",
        sa.Column("message_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("seq >= 0", name="ck_message_chunks_seq"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            ondelete="CASCADE",
            name="fk_message_chunks_message_id",
        ),
        sa.PrimaryKeyConstraint("message_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("message_chunks")
    op.drop_index("uq_messages_one_streaming", table_name="messages")
    if _sqlite():
        with op.batch_alter_table(
            "messages", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_constraint("ck_messages_status", type_="check")
            batch.drop_column("stream_heartbeat_at")
            batch.drop_column("status")
        _recreate_sqlite_triggers(streaming=False)
    else:
        op.drop_constraint("ck_messages_status", "messages", type_="check")
        op.drop_column("messages", "stream_heartbeat_at")
        op.drop_column("messages", "status")
