"""The compiled-statement cache: one entry per dialect instance, never shared across them."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from convostore import _sql


def test_each_dialect_gets_its_own_compilation() -> None:
    stmt = _sql.messages_query(after=True, before=False, descending=True, limited=True)
    lite = _sql.compiled(stmt, sqlite.dialect())
    pg = _sql.compiled(stmt, postgresql.psycopg.dialect())
    assert "?" in lite.sql and "%(cid)s" in pg.sql
    # The lease cutoff of the status column comes first (it is in the select list).
    values = {"cid": 1, "uid": "u", "after": 2, "lim": 3, "stale": _sql.stale_before(60)}
    assert lite.params(values)[1:5] == [1, "u", 2, 3]
    dialect = sqlite.dialect()
    assert _sql.compiled(stmt, dialect) is _sql.compiled(stmt, dialect)
