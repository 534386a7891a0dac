"""The compiled-statement cache: one entry per dialect instance, never shared across them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from convostore import Store, _sql
from convostore.db import make_engine


def test_each_dialect_gets_its_own_compilation() -> None:
    stmt = _sql.messages_query(after=True, before=False, descending=True, limited=True)
    lite = _sql.compiled(stmt, sqlite.dialect())
    pg = _sql.compiled(stmt, postgresql.psycopg.dialect())
    assert "?" in lite.sql and "%(cid)s" in pg.sql
    values = {"cid": 1, "uid": "u", "now": None, "after": 2, "lim": 3, "stale": None}
    params = lite.params(values)
    # The lease cutoff of the status column first (it is in the select list), then the
    # messages' owner, the live-conversation check (same cid/uid), the range; the page
    # size is written into the SQL, not sent.
    assert params[1:] == [1, "u", 1, "u", None, 2, 0]
    assert lite.statement(values).endswith("LIMIT 3 OFFSET ?")
    assert pg.statement(values).endswith("LIMIT 3") and "lim" not in pg.params(values)
    dialect = sqlite.dialect()
    assert _sql.compiled(stmt, dialect) is _sql.compiled(stmt, dialect)


@pytest.mark.postgres
def test_prepared_reads_keep_their_generic_plan(pg_url: str) -> None:
    """PostgreSQL: a read run again and again is planned once (its generic plan kept),
    which a LIMIT sent as a parameter prevented (every execution was planned anew)."""
    user = f"plans-{uuid.uuid4().hex[:8]}"
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        with Store(engine) as store:
            conv = store.create_conversation(user)
            store.append_messages(user, conv.id, [{"role": "user", "content": "hi"}] * 3)
            for _ in range(
                20
            ):  # past psycopg's prepare threshold, then PostgreSQL's 5 custom plans
                assert len(store.last_messages(user, conv.id, 2)) == 2
                assert len(store.list_conversations(user, limit=20).data) == 1
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement ~ 'LIMIT [0-9]+$'"
                ).all()
        assert len(rows) == 2
        assert all(generic > custom for generic, custom in rows), rows
    finally:
        engine.dispose()
