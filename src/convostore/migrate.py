"""Run the Alembic migrations shipped inside the package, without an ``alembic.ini``.

convostore keeps its own version table (``convostore_alembic_version``) so that it can live
in a host application's database beside the host's own Alembic history.

Migrations never go through a transaction pooler (PgBouncer, Neon's pooled URL): DDL
wants a connection of its own, for as long as it takes, and poolers in front of managed
PostgreSQL (Neon, Supabase) are documented as unfit for it. With ``DATABASE_URL`` pooled,
set ``DATABASE_DIRECT_URL`` to the direct connection string; :func:`migration_url` picks it.
"""

from __future__ import annotations

import re
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine

from convostore import _ddl
from convostore.config import get_settings, uses_pooler
from convostore.db import WRITE_OPTION, is_pooled
from convostore.errors import ConfigurationError
from convostore.models import API_KEYS_TABLE, OWNS_USERS, USERS_TABLE, schema_metadata

__all__ = [
    "TABLES",
    "VERSION_TABLE",
    "alembic_config",
    "check",
    "current",
    "downgrade",
    "exclude_convostore",
    "head",
    "include_object",
    "migration_url",
    "refuse_pooler",
    "upgrade",
]

VERSION_TABLE = "convostore_alembic_version"
#: The tables convostore creates and migrates (never the host's users table).
TABLES = frozenset(
    {
        "conversations",
        "messages",
        "message_chunks",
        API_KEYS_TABLE,
        "convostore_retention_policies",
        "convostore_tombstones",
    }
    | ({USERS_TABLE} if OWNS_USERS else set())
)
# Any constant works; it only has to be the same for every process migrating this database.
_PG_LOCK_KEY = 0x636F6E766F


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic filter: only convostore's tables (the host app may share the metadata/db).

    The full-text index's column and GIN index (PostgreSQL) are made by raw DDL, outside
    the models (see :mod:`convostore._ddl`); ``db verify`` checks them instead.
    """
    if type_ == "table":
        return name in TABLES
    if type_ in ("column", "index") and name in (
        _ddl.SEARCH_VECTOR,
        _ddl.SEARCH_INDEX,
        _ddl.UNSCOPED_SEARCH_INDEX,
    ):
        return False
    table = getattr(obj, "table", None)
    return table is None or table.name in TABLES


def exclude_convostore(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic filter for a *host* app's own autogenerate: leave convostore's tables alone.

    In your ``env.py``: ``context.configure(..., include_object=exclude_convostore)``; then
    ``alembic revision --autogenerate`` neither re-creates nor drops convostore's tables,
    which ``convostore db upgrade`` migrates on its own version table.
    """
    if type_ == "table":
        return name not in TABLES and name != VERSION_TABLE and not _ddl.is_search_table(name)
    table = getattr(obj, "table", None)
    return table is None or table.name not in TABLES


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", "convostore:migrations")
    return cfg


def head() -> str:
    """The newest revision shipped with this version of convostore."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def migration_url(url: str | None = None) -> str:
    """The URL to migrate: ``url`` if given, else ``DATABASE_DIRECT_URL`` if set, else
    ``DATABASE_URL``; a pooled one is refused with ``ConfigurationError``."""
    settings = get_settings()
    chosen = url or settings.database_direct_url or settings.database_url
    if uses_pooler(chosen):
        raise _pooled_error()
    return chosen


def _pooled_error() -> ConfigurationError:
    return ConfigurationError(
        "migrations cannot run through a connection pooler (this URL goes through "
        "PgBouncer/a pooled endpoint): set DATABASE_DIRECT_URL to a direct connection to "
        "the primary (Neon: the connection string without -pooler), or pass a direct URL"
    )


def refuse_pooler(bind: Engine | Connection) -> None:
    """Raise ``ConfigurationError`` naming DATABASE_DIRECT_URL if ``bind`` is pooled."""
    engine = bind.engine if isinstance(bind, Connection) else bind
    if is_pooled(engine):
        raise _pooled_error()


def _run(conn: Connection, fn: Any, revision: str) -> None:
    refuse_pooler(conn)
    if conn.dialect.name == "postgresql":
        # Several workers started with --migrate must not race: the first migrates,
        # the others wait here and then find nothing to do.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    fn(cfg, revision)


def upgrade_connection(conn: Connection, revision: str = "head") -> None:
    """Upgrade inside the caller's transaction on ``conn``."""
    _run(conn, command.upgrade, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade to ``revision`` (default: head) in one transaction."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        upgrade_connection(conn, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade to ``revision`` (default: drop everything convostore created)."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        _run(conn, command.downgrade, revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` if never migrated."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def check(bind: Engine | Connection) -> list[Any]:
    """Differences between the live schema and the models (empty when there is no drift).

    Alembic's comparison plus CHECK constraints, which Alembic does not compare: each is
    reported as ``("check_constraint", table, name, live, expected)``.
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return check(conn)
    ctx = MigrationContext.configure(
        bind,
        opts={
            "compare_type": True,
            "include_object": include_object,
            "version_table": VERSION_TABLE,
        },
    )
    metadata = schema_metadata(bind)
    return list(compare_metadata(ctx, metadata)) + _check_constraint_diffs(bind, metadata)


def _normalised_check(sql: str) -> str:
    """One spelling for the CHECK texts our constraints take on either database.

    PostgreSQL reflects ``role IN ('a', 'b')`` as ``role::text = ANY (ARRAY['a'::character
    varying, ...]::text[])`` and quotes ``"position"``; casts, quotes, brackets, spaces and
    case are dropped and ``= ANY (ARRAY[...])`` is read as ``IN (...)``.
    """
    sql = _CAST.sub("", sql)
    sql = _ANY_ARRAY.sub(r" IN (\1)", sql)
    return re.sub(r"[\s()\"]", "", sql).lower()


_CAST = re.compile(r"::(?:character varying|[a-z_]+)(?:\[\])?", re.IGNORECASE)
_ANY_ARRAY = re.compile(r"=\s*ANY\s*\(\s*ARRAY\s*\[(.*?)\]\s*\)", re.IGNORECASE)


def _check_constraint_diffs(conn: Connection, metadata: MetaData) -> list[Any]:
    insp = inspect(conn)
    present = set(insp.get_table_names())
    diffs: list[Any] = []
    for table in metadata.sorted_tables:
        if table.name not in TABLES or table.name not in present:
            continue
        expected = {
            str(c.name): str(c.sqltext)
            for c in table.constraints
            if isinstance(c, CheckConstraint) and c.name
        }
        live = {str(c["name"]): str(c["sqltext"]) for c in insp.get_check_constraints(table.name)}
        for name in sorted(expected.keys() | live.keys()):
            want, got = expected.get(name), live.get(name)
            if want is None or got is None or _normalised_check(want) != _normalised_check(got):
                diffs.append(("check_constraint", table.name, name, got, want))
    return diffs
