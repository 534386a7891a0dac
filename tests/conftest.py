"""Shared fixtures: a real SQLite file and a real PostgreSQL database for every test.

Each test gets an isolated state: SQLite tests get a fresh copy of a migrated database
file; PostgreSQL tests share one migrated database (``convostore_test_<pid>``, so two
test runs on one server never touch each other's data) that is truncated before each
test. Set ``CONVOSTORE_TEST_PG_URL`` to point at another server. With ``CI=true`` an
unreachable PostgreSQL (or a missing PgBouncer) fails the run instead of skipping.

Backends: ``sqlite``, ``postgresql`` and, for the suites in :data:`POOLED_SUITES`,
``pgbouncer``: the same PostgreSQL database reached through a PgBouncer in transaction
mode that the session starts itself (``tests/pgbouncer.py``), with a pool smaller than
the concurrency tests' writers. The parametrisation is made here, in one place
(:func:`pytest_generate_tests`), so a suite runs through the pooler exactly as it runs
direct.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from convostore import AsyncStore, Store
from convostore.db import make_engine
from convostore.migrate import upgrade

PG_SERVER_URL = os.environ.get(
    "CONVOSTORE_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
PG_TEST_DB = "convostore_test"
_CREATED: list[str] = []
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
POOLED = pytest.param("pgbouncer", marks=[pytest.mark.postgres, pytest.mark.pgbouncer])
#: The backends that are PostgreSQL underneath.
PG_BACKENDS = frozenset({"postgresql", "pgbouncer"})
#: Test files (and folders) whose ``backend`` also includes ``pgbouncer``: the store, its
#: concurrent writers, the REST API and the framework adapters (~1 min of the run).
POOLED_SUITES = ("test_store.py", "test_store_concurrency.py", "server/", "adapters/")
_TESTS = Path(__file__).parent


def _is_pooled_suite(path: Path) -> bool:
    relative = path.relative_to(_TESTS).as_posix()
    return any(relative.startswith(s) if s.endswith("/") else relative == s for s in POOLED_SUITES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend`` (unless the test does it itself) over the backends."""
    if "backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if "backend" in names:
            return
    pooled = _is_pooled_suite(Path(metafunc.definition.path))
    metafunc.parametrize("backend", [*BACKENDS, POOLED] if pooled else BACKENDS, indirect=True)


def _pg_unavailable(reason: str) -> None:
    msg = f"PostgreSQL is required but not reachable ({reason}); run scripts/ensure-postgres.sh"
    if IN_CI:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _admin(statements: list[str]) -> None:
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()


def pg_database_url(name: str) -> str:
    """The URL of this run's database ``name_<pid>`` (made by :func:`_create_pg_database`)."""
    database = f"{name}_{os.getpid()}"
    return make_url(PG_SERVER_URL).set(database=database).render_as_string(hide_password=False)


def _create_pg_database(name: str) -> str:
    """(Re)create database ``name_<pid>`` on the test server and return its URL."""
    url = pg_database_url(name)
    name = str(make_url(url).database)
    try:
        _admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'])
    except Exception as exc:  # any driver/connection failure means "not reachable"
        _pg_unavailable(str(exc).splitlines()[0])
    _CREATED.append(name)
    return url


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_databases() -> Iterator[None]:
    """Drop every database this run created, once the run is over."""
    yield
    if _CREATED:
        _admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in _CREATED])


@pytest.fixture(scope="session")
def pg_database() -> Callable[[str], str]:
    """Factory for extra, throw-away PostgreSQL databases (e.g. for migration tests)."""
    return _create_pg_database


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A migrated PostgreSQL database shared by the session (truncated per test)."""
    url = _create_pg_database(PG_TEST_DB)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database of ``backend`` with nothing in it (not even convostore's tables)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    factory: Callable[[str], str] = request.getfixturevalue("pg_database")
    return factory("convostore_test_empty")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE convostore_users, conversations, messages, convostore_api_keys,"
                " convostore_tombstones RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Parametrised by :func:`pytest_generate_tests` (or a test's own parametrize)."""
    return str(request.param)


@pytest.fixture(scope="session")
def pgbouncer_port() -> Iterator[int]:
    """A PgBouncer in transaction mode in front of the test server, for the session."""
    from tests.pgbouncer import running_pgbouncer

    server = make_url(PG_SERVER_URL)
    with running_pgbouncer(
        server.host or "127.0.0.1", server.port or 5432, server.username or "postgres"
    ) as port:
        yield port


def pooled_url(url: str, port: int) -> str:
    """``url`` through the PgBouncer on ``port``, flagged ``?pgbouncer=true``."""
    pooled = make_url(url).set(host="127.0.0.1", port=port)
    return pooled.update_query_dict({"pgbouncer": "true"}).render_as_string(hide_password=False)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to a migrated, empty database of the parametrised backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "convostore.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    if backend == "pgbouncer":
        return pooled_url(url, request.getfixturevalue("pgbouncer_port"))
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url) as s:
        yield s


@pytest.fixture
async def astore(db_url: str) -> AsyncIterator[AsyncStore]:
    async with AsyncStore(db_url) as s:
        yield s


class MaybeAsync:
    """Drive a sync or an async store with the same ``await``-style test body."""

    def __init__(self, target: Store | AsyncStore) -> None:
        self.target = target
        self.is_async = isinstance(target, AsyncStore)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if not callable(attr) or inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[MaybeAsync]:
    """The store under test, once sync and once async, on each backend."""
    if request.param == "sync":
        with Store(db_url) as s:
            yield MaybeAsync(s)
    else:
        async with AsyncStore(db_url) as a:
            yield MaybeAsync(a)
