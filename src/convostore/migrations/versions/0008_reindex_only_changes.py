"""SQLite: the full-text index re-indexes a row only when its indexed text (or owner)
changed.

The update triggers were ``AFTER UPDATE OF title, user_id`` (``content, user_id`` for
messages), which SQLite fires for any UPDATE that names the column, changed or not.
Every append sets ``title = COALESCE(title, :auto_title)``, so the conversation's title
was taken out of the index and put back on each message: six writes to FTS5's shadow
tables, ~10% of an append's work. The triggers gain ``WHEN OLD.x IS NOT NEW.x``; what
the index holds is unchanged (nothing to rebuild). PostgreSQL: nothing to do (its
search vector is a generated column).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from convostore import _ddl

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _remake(*, when_changed: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in _ddl.search_update_triggers(when_changed=when_changed):
        op.execute(sa.text(statement))


def upgrade() -> None:
    _remake(when_changed=True)


def downgrade() -> None:
    _remake(when_changed=False)
