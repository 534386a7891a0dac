"""Initial schema: conversations, messages, and convostore's users table if it keeps one.

With ``CONVOSTORE_USERS_TABLE`` set, the host's users table must exist already; the
``user_id`` columns take the type of its ``id`` and reference it.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from convostore.migrations import host_user_id_type
from convostore.models import HOST_USERS_TABLE, USERS_TABLE

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    if HOST_USERS_TABLE is None:
        user_id: sa.types.TypeEngine[Any] = sa.String(255)
        op.create_table(
            USERS_TABLE,
            sa.Column("id", user_id, primary_key=True),
            sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        )
    else:
        user_id = host_user_id_type(op.get_bind(), HOST_USERS_TABLE)
    op.create_table(
        "conversations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("user_id", user_id, nullable=False),
        sa.Column("title", sa.String(255), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], [f"{USERS_TABLE}.id"], ondelete="CASCADE", name="fk_conversations_user_id"
        ),
        sa.UniqueConstraint("id", "user_id", name="uq_conversations_id_user_id"),
        sa.CheckConstraint("message_count >= 0", name="ck_conversations_message_count"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_conversations_user_id_updated_at", "conversations", ["user_id", "updated_at", "id"]
    )
    op.create_index(
        "uq_conversations_user_external_id",
        "conversations",
        ["user_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
        sqlite_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "messages",
        sa.Column("id", ID, primary_key=True),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("user_id", user_id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tool_calls", JSON, nullable=True),
        sa.Column("tool_call_id", sa.String(255), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("client_key", sa.String(255), nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id", "user_id"],
            ["conversations.id", "conversations.user_id"],
            ondelete="CASCADE",
            name="fk_messages_conversation_owner",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], [f"{USERS_TABLE}.id"], ondelete="CASCADE", name="fk_messages_user_id"
        ),
        sa.UniqueConstraint(
            "conversation_id", "position", name="uq_messages_conversation_position"
        ),
        sa.CheckConstraint(
            "role IN ('user', 'assistant', 'system', 'tool')", name="ck_messages_role"
        ),
        sa.CheckConstraint("position >= 1", name="ck_messages_position"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_messages_user_id_created_at", "messages", ["user_id", "created_at"])
    op.create_index(
        "uq_messages_conversation_client_key",
        "messages",
        ["conversation_id", "client_key"],
        unique=True,
        postgresql_where=sa.text("client_key IS NOT NULL"),
        sqlite_where=sa.text("client_key IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The database enforces that conversation_id determines user_id; tell the planner,
        # or it multiplies the two selectivities, underestimates a long conversation by
        # orders of magnitude, and sorts it instead of walking (conversation_id, position).
        op.execute(
            "CREATE STATISTICS stx_messages_conversation_user (dependencies)"
            " ON conversation_id, user_id FROM messages"
        )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("conversations")
    if HOST_USERS_TABLE is None:
        op.drop_table(USERS_TABLE)
