"""Full-text search: an index over message text and conversation titles.

* PostgreSQL: ``messages.search_vector``, a stored generated ``tsvector`` over ``content``
  with the text-search configuration ``CONVOSTORE_SEARCH_CONFIG`` (default ``simple``),
  and a GIN index on it. Adding the column computes it for every existing row.
* SQLite: FTS5 external-content tables ``messages_fts`` and ``conversations_fts``, kept in
  sync by insert/update/delete triggers, rebuilt here from the existing rows.

Both lock writes to ``messages`` while existing rows are indexed (one transaction).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from convostore import _ddl
from convostore.config import get_settings

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    config = get_settings().search_config
    for statement in _ddl.search_create_statements(
        dialect, config=config, scoped=False, when_changed=False
    ):
        op.execute(sa.text(statement))


def downgrade() -> None:
    for statement in _ddl.search_drop_statements(op.get_bind().dialect.name):
        op.execute(sa.text(statement))
