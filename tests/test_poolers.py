"""Transaction poolers (PgBouncer, Neon's pooled URLs): how a pooled URL is recognised,
why it matters (this PgBouncer really breaks psycopg's prepared statements), and that
migrations take the direct URL or stop with an error naming DATABASE_DIRECT_URL.

The store, REST and adapter suites run through the same PgBouncer as the ``pgbouncer``
backend (tests/conftest.py); this file covers what those suites cannot show.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import make_url, text
from typer.testing import CliRunner

from convostore import AsyncStore, Store
from convostore.cli import app as cli
from convostore.config import Settings, get_settings, uses_pooler
from convostore.db import is_pooled, make_engine
from convostore.errors import ConfigurationError
from convostore.migrate import current, head, upgrade
from tests.conftest import pooled_url

NEON_POOLED = "postgresql://u:p@ep-cool-1234-pooler.eu-central-1.aws.neon.tech/neondb"


@pytest.mark.parametrize(
    ("url", "setting", "pooled"),
    [
        ("postgresql://u@db.internal/app?pgbouncer=true", "auto", True),
        ("postgresql://u@db.internal/app?pgbouncer=false", "auto", False),
        (NEON_POOLED + "?sslmode=require", "auto", True),
        ("postgresql://u@ep-cool-1234.eu-central-1.aws.neon.tech/neondb", "auto", False),
        ("postgresql://u@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", "auto", True),
        ("postgresql://u@127.0.0.1:6432/app", "auto", False),  # a port proves nothing
        ("postgresql://u@127.0.0.1:6432/app", "true", True),
        (NEON_POOLED, "false", False),
        ("sqlite:///chat.db", "true", False),
    ],
)
def test_pooled_urls_are_recognised(url: str, setting: str, pooled: bool) -> None:
    assert uses_pooler(url, setting) is pooled


def test_the_setting_reads_like_a_boolean(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, expected in [("1", "true"), ("No", "false"), ("AUTO", "auto"), ("", "auto")]:
        monkeypatch.setenv("CONVOSTORE_PGBOUNCER", raw)
        assert Settings().pgbouncer == expected
    monkeypatch.setenv("CONVOSTORE_PGBOUNCER", "sometimes")
    with pytest.raises(ValueError, match="CONVOSTORE_PGBOUNCER"):
        Settings()


def test_a_pooled_engine_prepares_nothing_and_hides_the_flag_from_libpq() -> None:
    engine = make_engine("postgresql://u@127.0.0.1:1/db?pgbouncer=true")
    assert is_pooled(engine) and not is_pooled(make_engine("postgresql://u@127.0.0.1:1/db"))
    cparams = {"pgbouncer": "true", "dbname": "db"}
    engine.dialect.dispatch.do_connect(engine.dialect, None, [], cparams)
    assert cparams == {"dbname": "db", "prepare_threshold": None}


def _hold_a_transaction(url: str, inside: Callable[[], None]) -> None:
    """Run ``inside`` while another client of the pooler holds a transaction open, so
    the pooler hands ``inside``'s next transaction another server connection."""
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1")  # BEGIN + SELECT: a server connection stays assigned
        inside()


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_this_pgbouncer_breaks_prepared_statements_and_ours_makes_none(
    pg_url: str, pgbouncer_port: int
) -> None:
    plain = make_url(pooled_url(pg_url, pgbouncer_port)).difference_update_query(["pgbouncer"])
    dsn = plain.set(drivername="postgresql").render_as_string(hide_password=False)
    # psycopg's default: server-side prepared statements (here from the first run).
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        conn.execute("SELECT %s::int", [1])
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            _hold_a_transaction(dsn, lambda: conn.execute("SELECT %s::int", [2]))
    # convostore's engine on the flagged URL: the same sequence, many times, works.
    engine = make_engine(pooled_url(pg_url, pgbouncer_port), pool_size=1)
    with engine.connect() as conn:
        for n in range(8):
            _hold_a_transaction(
                dsn, lambda n=n: conn.execute(text("SELECT CAST(:n AS int)"), {"n": n}).scalar()
            )
            conn.commit()
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.pgbouncer
async def test_migrations_take_the_direct_url_never_the_pooler(
    pg_database: Callable[[str], str], pgbouncer_port: int
) -> None:
    direct = pg_database("pooler_migrate")
    pooled = pooled_url(direct, pgbouncer_port)
    with Store(pooled) as store:
        with pytest.raises(ConfigurationError, match="DATABASE_DIRECT_URL"):
            store.migrate()
    async with AsyncStore(pooled) as astore:
        with pytest.raises(ConfigurationError, match="DATABASE_DIRECT_URL"):
            await astore.migrate()
    engine = make_engine(pooled)
    with pytest.raises(ConfigurationError, match="DATABASE_DIRECT_URL"):
        upgrade(engine)
    assert current(engine) is None  # refused before anything ran
    async with AsyncStore(pooled, direct_url=direct) as astore:
        await astore.migrate()
    assert current(engine) == head()
    with Store(pooled, direct_url=direct) as store:
        store.migrate()  # at head already: nothing to do, and no error
        conv = store.create_conversation("alice")
        assert store.get_conversation("alice", conv.id).id == conv.id
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_the_cli_migrates_through_database_direct_url(
    pg_database: Callable[[str], str], pgbouncer_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = pg_database("pooler_cli")
    monkeypatch.setenv("DATABASE_URL", pooled_url(direct, pgbouncer_port))
    monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    refused = runner.invoke(cli, ["db", "upgrade"])
    assert refused.exit_code != 0
    assert "DATABASE_DIRECT_URL" in refused.output
    monkeypatch.setenv("DATABASE_DIRECT_URL", direct)
    done = runner.invoke(cli, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    checked = runner.invoke(cli, ["db", "check"])  # reads run through the pooler
    assert checked.exit_code == 0, checked.output
    get_settings.cache_clear()


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_serve_migrate_takes_the_direct_url(
    pg_database: Callable[[str], str], pgbouncer_port: int
) -> None:
    from convostore.cli.serve import _prepare_database

    direct = pg_database("pooler_serve")
    pooled = pooled_url(direct, pgbouncer_port)
    with pytest.raises(ConfigurationError, match="DATABASE_DIRECT_URL"):
        _prepare_database(pooled, True)
    _prepare_database(pooled, True, direct)
    engine = make_engine(pooled)
    assert current(engine) == head()
    engine.dispose()
    _prepare_database(pooled, False)  # only reads the revision: through the pooler is fine


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_concurrent_writers_share_fewer_server_connections(
    db_url_pooled: str, pgbouncer_port: int
) -> None:
    # Twelve clients, four server connections (tests/pgbouncer.py POOL_SIZE), every
    # statement run more often than psycopg's prepare threshold.
    with Store(db_url_pooled, pool_size=12) as store:
        conv = store.create_conversation("alice")
        errors: list[BaseException] = []

        def write(n: int) -> None:
            try:
                for i in range(10):
                    store.append_message("alice", conv.id, {"role": "user", "content": f"{n}.{i}"})
                    store.get_history("alice", conv.id, max_tokens=50)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        positions = [m.position for m in store.get_messages("alice", conv.id)]
        assert positions == list(range(1, 121))


@pytest.fixture
def db_url_pooled(pg_url: str, pgbouncer_port: int) -> str:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_url)
    return pooled_url(pg_url, pgbouncer_port)


def test_the_scaling_guide_documents_the_real_settings() -> None:
    from pathlib import Path

    guide = (Path(__file__).parents[1] / "docs" / "scaling.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", guide, flags=re.M))
    known = {
        str(alias)
        for name, info in Settings.model_fields.items()
        for alias in (
            info.validation_alias.choices
            if hasattr(info.validation_alias, "choices")
            else [info.validation_alias or name]
        )
    }
    assert documented and documented <= known, documented - known
