"""Retention: expiring and temporary conversations, holds, per-user policies, tombstones.

* ``conversations``: ``expires_at`` (NULL: never), ``retention_seconds`` (the lifetime after
  the last activity, NULL: none), ``temporary`` and ``hold`` (both false); existing
  conversations get no expiry. A partial index on ``expires_at`` over the conversations
  that can expire (``expires_at IS NOT NULL AND NOT hold``) is the purge's queue.
* ``convostore_retention_policies``: a user's own defaults (convostore's table: a host's
  users table is never altered).
* ``convostore_tombstones``: what the purge deleted, content-free (id, user, when, why).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from convostore import _ddl
from convostore.migrations import host_user_id_type
from convostore.models import HOST_USERS_TABLE, USERS_TABLE

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("conversations", sa.Column("expires_at", _TS, nullable=True))
    op.add_column("conversations", sa.Column("retention_seconds", sa.BigInteger(), nullable=True))
    for name in ("temporary", "hold"):
        op.add_column(
            "conversations",
            sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    op.create_index(
        "ix_conversations_expires_at",
        "conversations",
        ["expires_at"],
        postgresql_where=sa.text(_ddl.EXPIRING),
        sqlite_where=sa.text(_ddl.EXPIRING),
    )
    # The users' id type is whatever the users table's is (convostore's or the host's).
    user_id_type: sa.types.TypeEngine[Any] = (
        sa.String(255)
        if HOST_USERS_TABLE is None
        else host_user_id_type(op.get_bind(), HOST_USERS_TABLE)
    )
    op.create_table(
        "convostore_retention_policies",
        sa.Column("user_id", user_id_type, primary_key=True),
        sa.Column("retention", sa.String(32), nullable=True),
        sa.Column("temporary_retention", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{USERS_TABLE}.id"],
            ondelete="CASCADE",
            name="fk_convostore_retention_policies_user_id",
        ),
    )
    op.create_table(
        "convostore_tombstones",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("deleted_at", _TS, nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_convostore_tombstones_user_id", "convostore_tombstones", ["user_id"])
    op.create_index("ix_convostore_tombstones_deleted_at", "convostore_tombstones", ["deleted_at"])


def downgrade() -> None:
    op.drop_table("convostore_tombstones")
    op.drop_table("convostore_retention_policies")
    op.drop_index("ix_conversations_expires_at", table_name="conversations")
    # SQLite drops these in place (3.35+): no index or trigger names them any more.
    for name in ("hold", "temporary", "retention_seconds", "expires_at"):
        op.drop_column("conversations", name)
