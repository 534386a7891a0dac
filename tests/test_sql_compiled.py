"""The compiled-statement cache: one entry per dialect instance, never shared across them."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from convostore import _sql


def test_each_dialect_gets_its_own_compilation() -> None:
    stmt = _sql.messages_query(after=True, before=False, descending=True, limited=True)
    lite = _sql.compiled(stmt, sqlite.dialect())
    pg = _sql.compiled(stmt, postgresql.psycopg.dialect())
    assert "?" in lite.sql and "%(cid)s" in pg.sql
    values = {"cid": 1, "uid": "u", "now": None, "after": 2, "lim": 3, "stale": None}
    params = lite.params(values)
    # The lease cutoff of the status column first (it is in the select list), then the
    # messages' owner, the live-conversation check (same cid/uid), the range.
    assert params[1:] == [1, "u", 1, "u", None, 2, 3, 0]
    dialect = sqlite.dialect()
    assert _sql.compiled(stmt, dialect) is _sql.compiled(stmt, dialect)
