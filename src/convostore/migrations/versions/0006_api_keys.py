"""API keys for the REST service: ``convostore_api_keys`` (only SHA-256 hashes of keys).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
# Written beside 0004/0005 (other issues); re-chained after them when merged.
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "convostore_api_keys",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("can_act_for_users", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", _TS, server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_convostore_api_keys_key_hash", "convostore_api_keys", ["key_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_convostore_api_keys_key_hash", table_name="convostore_api_keys")
    op.drop_table("convostore_api_keys")
