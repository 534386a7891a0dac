"""Search indexes scoped by user: a rare word costs the same however much a user stored.

* PostgreSQL: the GIN index on ``search_vector`` becomes one on ``(user_id,
  search_vector)`` (extension ``btree_gin``, trusted since PostgreSQL 13: the database's
  owner may create it). The user filter and the words meet inside the index, instead of
  ANDing a bitmap of every row the user owns.
* SQLite: the FTS5 tables gain an ``owner`` column (a token per user, read through a view
  over the table), which every query ANDs in, so FTS5 walks that user's matches only.

Both rebuild the index from the existing rows (in the migration's transaction).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from convostore import _ddl
from convostore.config import get_settings

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(*, scoped: bool) -> None:
    dialect = op.get_bind().dialect.name
    config = get_settings().search_config
    statements = _ddl.search_create_statements(
        dialect, config=config, scoped=scoped, when_changed=False
    )
    if dialect == "sqlite":
        # FTS5 cannot add a column: the tables are made again (their text is not stored).
        statements = _ddl.search_drop_statements(dialect) + statements
    elif not scoped:  # back to 0003's index, then drop 0007's
        statements += [f"DROP INDEX IF EXISTS {_ddl.SEARCH_INDEX}"]
    for statement in statements:
        op.execute(sa.text(statement))


def upgrade() -> None:
    _rebuild(scoped=True)


def downgrade() -> None:
    # btree_gin stays installed: other objects of the database may use it.
    _rebuild(scoped=False)
