"""The models are real models: triggers for the seeds' inserts, convostore_users.

* ``messages``: a row inserted without a position (an ORM ``session.add`` or a raw
  ``INSERT`` of the seeds' columns) gets its position, owner and a never-tying
  ``created_at`` from a trigger, under the conversation's row lock; ``created_at`` loses its
  DDL default so that the trigger can tell "not given" from a caller's value.
* Standalone (no ``CONVOSTORE_USERS_TABLE``): convostore's users table is
  ``convostore_users`` (renamed from ``users``, which a host app's own table may need), and
  a conversation's insert registers a new user by itself.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from convostore import _ddl
from convostore.models import OWNS_USERS

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _set_created_at_default(default: sa.TextClause | None) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a column: batch mode rebuilds the table (keeping AUTOINCREMENT,
        # so that no popped message id is handed out again).
        with op.batch_alter_table(
            "messages", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.alter_column("created_at", existing_type=_TS, server_default=default)
    else:
        op.alter_column("messages", "created_at", existing_type=_TS, server_default=default)


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    if OWNS_USERS and insp.has_table("users") and not insp.has_table(_ddl.OWN_USERS_TABLE):
        # A database made by 0001 before it named the table convostore_users.
        op.rename_table("users", _ddl.OWN_USERS_TABLE)
    _set_created_at_default(None)
    # As the trigger was at this revision: 0004 recreates it with the streaming columns.
    statements = _ddl.create_statements(bind.dialect.name, own_users=OWNS_USERS, streaming=False)
    for statement in statements:
        op.execute(sa.text(statement))


def downgrade() -> None:
    bind = op.get_bind()
    for statement in _ddl.drop_statements(bind.dialect.name):
        op.execute(sa.text(statement))
    _set_created_at_default(sa.text("CURRENT_TIMESTAMP"))
