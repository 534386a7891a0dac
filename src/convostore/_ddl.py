"""The database-side half of the schema: triggers that make the tables real models.

A host app may ``session.add(Message(...))`` or ``INSERT INTO messages`` with only the
seeds' columns; these triggers fill in what the store's own append computes (the next
position, the owner, a ``created_at`` that never ties) under the conversation's row lock,
so both ways of writing give the same gapless order. Rows that already carry a position
(the store's appends, imports) skip them (``WHEN NEW.position IS NULL``).

Shared by ``SQLModel.metadata.create_all`` (attached in :mod:`convostore.models`) and the
shipped migrations, so both create the same schema. Nothing here imports the models.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "EXPIRING",
    "MESSAGES_FTS",
    "OWN_USERS_TABLE",
    "SEARCH_INDEX",
    "SEARCH_VECTOR",
    "TITLES_FTS",
    "create_statements",
    "drop_statements",
    "live_triggers",
    "trigger_names",
    "pg_next_timestamp",
    "pg_plus_seconds",
    "sqlite_plus_seconds",
    "is_search_table",
    "pg_search_config",
    "search_create_statements",
    "search_update_triggers",
    "owner_token",
    "search_drop_statements",
    "search_trigger_names",
    "sqlite_next_timestamp",
]

#: Conversations that can expire: the purge's partial index and its queries say it alike
#: (SQLite uses a partial index only when the query repeats the index's terms).
EXPIRING = "expires_at IS NOT NULL AND NOT hold"

#: convostore's own users table when the host names none (never clashes with a host's).
OWN_USERS_TABLE = "convostore_users"

_MESSAGE_TRIGGER = "convostore_message_defaults"
_USER_TRIGGER = "convostore_register_user"
_FK_NAME = "fk_messages_conversation_owner"


def pg_next_timestamp(prev: str, now: str, n: str) -> str:
    """The newest of ``n`` strictly increasing instants after ``prev``, from ``now`` on.

    The ``created_at`` of messages appended under the conversation's lock: never a tie and
    never earlier than the previous message, so ``ORDER BY created_at`` follows positions.
    """
    return (
        f"GREATEST({now} + ({n} - 1) * interval '1 microsecond',"
        f" {prev} + {n} * interval '1 microsecond')"
    )


def _sqlite_micros(ts: str) -> str:
    # SQLite keeps timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text (fraction optional).
    return (
        f"(CAST(strftime('%s', substr({ts}, 1, 19)) AS INTEGER) * 1000000"
        f" + CAST(substr({ts} || '000000', 21, 6) AS INTEGER))"
    )


def _sqlite_timestamp(micros: str) -> str:
    return (
        f"(strftime('%Y-%m-%d %H:%M:%S', {micros} / 1000000, 'unixepoch')"
        f" || printf('.%06d', {micros} % 1000000))"
    )


def sqlite_next_timestamp(prev: str, now: str, n: str) -> str:
    """:func:`pg_next_timestamp` for SQLite's timestamp text, in whole microseconds."""
    return _sqlite_timestamp(f"max({_sqlite_micros(now)} + {n} - 1, {_sqlite_micros(prev)} + {n})")


def pg_plus_seconds(ts: str, seconds: str) -> str:
    """``ts`` + ``seconds`` (NULL seconds: NULL), e.g. an expiry from the last activity."""
    return f"({ts} + {seconds} * interval '1 second')"


def sqlite_plus_seconds(ts: str, seconds: str) -> str:
    """:func:`pg_plus_seconds` for SQLite's timestamp text (NULL seconds: NULL)."""
    return (
        f"(CASE WHEN {seconds} IS NULL THEN NULL ELSE"
        f" {_sqlite_timestamp(f'({_sqlite_micros(ts)} + {seconds} * 1000000)')} END)"
    )


_SQLITE_CLOCK = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

_MESSAGE_COLUMNS = "role, content, tool_calls, tool_call_id, metadata, client_key"
# Since migration 0004 (streamed replies); earlier revisions recreate the trigger without.
_STREAM_COLUMNS = ", status, stream_heartbeat_at"


def _pg_statements(own_users: bool) -> list[str]:
    statements = [
        f"""
CREATE OR REPLACE FUNCTION {_MESSAGE_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    conv record;
BEGIN
    IF NEW.position IS NOT NULL THEN
        -- A caller that places the row itself only left out the time (and the owner).
        NEW.created_at := clock_timestamp();
        IF NEW.user_id IS NULL THEN
            SELECT user_id INTO NEW.user_id FROM conversations WHERE id = NEW.conversation_id;
        END IF;
        RETURN NEW;
    END IF;
    -- The row lock taken here serialises concurrent inserts into one conversation.
    UPDATE conversations
       SET message_count = message_count + 1,
           updated_at = {pg_next_timestamp("updated_at", "clock_timestamp()", "1")}
     WHERE id = NEW.conversation_id
       AND (NEW.user_id IS NULL OR user_id = NEW.user_id)
    RETURNING message_count, user_id, updated_at INTO conv;
    IF NOT FOUND THEN
        RAISE EXCEPTION
            'insert or update on table "messages" violates foreign key constraint "{_FK_NAME}"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{_FK_NAME}',
                  TABLE = 'messages',
                  DETAIL = format('Key (conversation_id)=(%s) is not present in table '
                                  '"conversations" for this user.', NEW.conversation_id);
    END IF;
    NEW.position := conv.message_count;
    NEW.user_id := conv.user_id;
    NEW.created_at := COALESCE(NEW.created_at, conv.updated_at);
    RETURN NEW;
END
$$""",
        f"DROP TRIGGER IF EXISTS {_MESSAGE_TRIGGER} ON messages",
        f"""CREATE TRIGGER {_MESSAGE_TRIGGER} BEFORE INSERT ON messages
    FOR EACH ROW WHEN (NEW.position IS NULL OR NEW.created_at IS NULL)
    EXECUTE FUNCTION {_MESSAGE_TRIGGER}()""",
    ]
    if own_users:
        statements += [
            f"""
CREATE OR REPLACE FUNCTION {_USER_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {OWN_USERS_TABLE} (id, created_at) VALUES (NEW.user_id, now())
        ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END
$$""",
            f"DROP TRIGGER IF EXISTS {_USER_TRIGGER} ON conversations",
            f"""CREATE TRIGGER {_USER_TRIGGER} BEFORE INSERT ON conversations
    FOR EACH ROW EXECUTE FUNCTION {_USER_TRIGGER}()""",
        ]
    return statements


def _sqlite_statements(own_users: bool, streaming: bool) -> list[str]:
    # SQLite triggers cannot assign NEW: the trigger stores the completed row itself and
    # drops the original one (RAISE(IGNORE)). The ORM path never gets here, because
    # convostore._orm fills in the position first (the ORM needs the real row id back).
    stream = _STREAM_COLUMNS if streaming else ""
    new_stream = ", NEW.status, NEW.stream_heartbeat_at" if streaming else ""
    statements = [
        f"DROP TRIGGER IF EXISTS {_MESSAGE_TRIGGER}",
        f"""CREATE TRIGGER {_MESSAGE_TRIGGER} BEFORE INSERT ON messages
FOR EACH ROW WHEN NEW.position IS NULL OR NEW.created_at IS NULL
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed')
     WHERE NEW.position IS NULL
       AND NOT EXISTS (SELECT 1 FROM conversations
                        WHERE id = NEW.conversation_id
                          AND (NEW.user_id IS NULL OR user_id = NEW.user_id));
    UPDATE conversations
       SET message_count = message_count + 1,
           updated_at = {sqlite_next_timestamp("updated_at", _SQLITE_CLOCK, "1")}
     WHERE id = NEW.conversation_id AND NEW.position IS NULL;
    -- NEW.id is -1 when the caller gave none. A caller that placed the row itself (a
    -- position) only left out the time, which is then the clock's.
    INSERT INTO messages (id, conversation_id, user_id, position, {_MESSAGE_COLUMNS}{stream},
                          created_at)
    SELECT NULLIF(NEW.id, -1), NEW.conversation_id, COALESCE(NEW.user_id, c.user_id),
           COALESCE(NEW.position, c.message_count), NEW.role, NEW.content, NEW.tool_calls,
           NEW.tool_call_id, NEW.metadata, NEW.client_key{new_stream},
           COALESCE(NEW.created_at,
                    CASE WHEN NEW.position IS NULL THEN c.updated_at
                         ELSE {_SQLITE_CLOCK} || '000' END)
      FROM (SELECT 1) LEFT JOIN conversations AS c ON c.id = NEW.conversation_id;
    SELECT RAISE(IGNORE);
END""",
    ]
    if own_users:
        statements += [
            f"DROP TRIGGER IF EXISTS {_USER_TRIGGER}",
            f"""CREATE TRIGGER {_USER_TRIGGER} BEFORE INSERT ON conversations
FOR EACH ROW
BEGIN
    INSERT OR IGNORE INTO {OWN_USERS_TABLE} (id, created_at)
    VALUES (NEW.user_id, strftime('%Y-%m-%d %H:%M:%f000', 'now'));
END""",
        ]
    return statements


def create_statements(dialect: str, *, own_users: bool, streaming: bool = True) -> list[str]:
    """The DDL that (re)creates convostore's triggers on ``dialect``; idempotent.

    ``streaming=False``: for a schema before migration 0004 (no ``status`` columns).
    """
    if dialect == "postgresql":
        return _pg_statements(own_users)
    if dialect == "sqlite":
        return _sqlite_statements(own_users, streaming)
    return []


def drop_statements(dialect: str) -> list[str]:
    """The DDL that removes every trigger (and PostgreSQL function) convostore created."""
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {_MESSAGE_TRIGGER} ON messages",
            f"DROP TRIGGER IF EXISTS {_USER_TRIGGER} ON conversations",
            f"DROP FUNCTION IF EXISTS {_MESSAGE_TRIGGER}()",
            f"DROP FUNCTION IF EXISTS {_USER_TRIGGER}()",
        ]
    if dialect == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {_MESSAGE_TRIGGER}",
            f"DROP TRIGGER IF EXISTS {_USER_TRIGGER}",
        ]
    return []


def trigger_names(*, own_users: bool) -> list[str]:
    """The triggers a complete schema has."""
    return [_MESSAGE_TRIGGER, *([_USER_TRIGGER] if own_users else [])]


def live_triggers(conn: Any) -> set[str]:
    """The names of the triggers that exist on ``conn``'s database (for ``db verify``)."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    elif conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        return set()
    return {str(name) for (name,) in conn.exec_driver_sql(sql)}


# ------------------------------------------------------------------ full-text search
#
# PostgreSQL: a stored generated ``tsvector`` column over the message text, with a GIN
# index; the database keeps it current on every insert and update, whoever writes. The
# text-search configuration is fixed into the column when it is created (a generated
# column's expression cannot read a setting), from ``CONVOSTORE_SEARCH_CONFIG``.
# Conversation titles are few per user: matched without an index, after the user filter.
#
# SQLite: FTS5 external-content tables over ``messages.content`` and
# ``conversations.title`` (the text is not stored twice), kept in sync by triggers. Foreign
# key cascades delete rows one by one, so a deleted conversation or user fires them too.

#: The generated column and its index (PostgreSQL); not part of the models' columns.
SEARCH_VECTOR = "search_vector"
#: A GIN index on ``(user_id, search_vector)`` (the ``btree_gin`` extension, trusted since
#: PostgreSQL 13): one user's matches are the intersection of two posting lists inside the
#: index, so a rare word costs the same for a user with 100 or 100,000 messages. Migration
#: 0003 made a GIN index on the vector alone, which had to be ANDed with every row of the
#: user's (``UNSCOPED_SEARCH_INDEX``); 0007 replaced it.
SEARCH_INDEX = "ix_messages_user_id_search_vector"
UNSCOPED_SEARCH_INDEX = "ix_messages_search_vector"
#: The FTS5 tables (SQLite).
MESSAGES_FTS = "messages_fts"
TITLES_FTS = "conversations_fts"
FTS_TOKENIZER = "unicode61 remove_diacritics 2"
#: SQLite, from 0007: each indexed row also carries its owner as one token in an ``owner``
#: column (``u`` + the hex of the user id's UTF-8: letters and digits only, so the
#: tokenizer keeps it whole), and a query ANDs it in: FTS5 then walks one user's matches
#: only, newest first, instead of every user's. The external content is a view that adds
#: the column (a view is read by name: a later migration that rebuilds ``messages`` or
#: ``conversations`` on SQLite must drop these views first, as ALTER TABLE RENAME checks
#: every view of the schema).
OWNER_COLUMN = "owner"

_FTS_SOURCES = ((MESSAGES_FTS, "messages", "content"), (TITLES_FTS, "conversations", "title"))


def owner_token(user_id: str) -> str:
    """The token that stands for ``user_id`` in the ``owner`` column (SQLite's ``'u' ||
    hex(user_id)``)."""
    return "u" + user_id.encode().hex().upper()


def _source_view(fts: str) -> str:
    return f"{fts}_source"


#: The ``owner`` token of a row (``{}``: ``OLD``, ``NEW`` or the table), as SQL.
_OWNER_SQL = "'u' || hex({}.user_id)"


class _FtsSync(NamedTuple):
    """How one FTS5 table is kept in sync with its source table, in one layout."""

    columns: str  # the FTS5 table's columns
    source: str  # its external content (the table, or the view that adds the owner)
    watched: str  # the source columns whose update re-indexes a row
    delete_old: str  # trigger statements
    insert_new: str


def _fts_sync(fts: str, table: str, col: str, *, scoped: bool) -> _FtsSync:
    if scoped:
        columns, source = f"{col}, {OWNER_COLUMN}", _source_view(fts)
        # FTS5's 'delete' must be given the values that were indexed, so a change of
        # owner re-indexes the row too (a host's UPDATE of a conversation that has no
        # messages yet; a message's owner is held to its conversation's by a foreign key).
        watched = f"{col}, user_id"
        old = f"OLD.{col}, {_OWNER_SQL.format('OLD')}"
        new = f"NEW.{col}, {_OWNER_SQL.format('NEW')}"
    else:  # the layout of migrations 0003 to 0006
        columns, source, old, new, watched = col, table, f"OLD.{col}", f"NEW.{col}", col
    return _FtsSync(
        columns,
        source,
        watched,
        f"INSERT INTO {fts} ({fts}, rowid, {columns}) VALUES ('delete', OLD.id, {old});",
        f"INSERT INTO {fts} (rowid, {columns}) VALUES (NEW.id, {new});",
    )


def _fts_update_trigger(
    fts: str, table: str, col: str, *, scoped: bool, when_changed: bool
) -> list[str]:
    """Drop and create the trigger that re-indexes an updated row.

    ``when_changed`` (from migration 0008): only when an indexed value really changed.
    ``UPDATE OF`` fires on any statement that names the column, and every append sets
    ``title = COALESCE(title, ...)``: the title was re-indexed (an FTS5 delete and
    insert, six shadow-table writes) on every message, ~10% of a SQLite append.
    """
    sync = _fts_sync(fts, table, col, scoped=scoped)
    condition = ""
    if when_changed:
        changed = [f"OLD.{c} IS NOT NEW.{c}" for c in sync.watched.split(", ")]
        condition = f" WHEN {' OR '.join(changed)}"
    return [
        f"DROP TRIGGER IF EXISTS {fts}_update",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {sync.watched} ON {table}{condition}"
        f" BEGIN {sync.delete_old} {sync.insert_new} END",
    ]


def _sqlite_fts_statements(*, scoped: bool, when_changed: bool) -> list[str]:
    statements: list[str] = []
    for fts, table, col in _FTS_SOURCES:
        sync = _fts_sync(fts, table, col, scoped=scoped)
        if scoped:
            statements.append(
                f"CREATE VIEW IF NOT EXISTS {sync.source} AS SELECT id, {col},"
                f" {_OWNER_SQL.format(table)} AS {OWNER_COLUMN} FROM {table}"
            )
        statements += [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({sync.columns},"
            f" content='{sync.source}', content_rowid='id', tokenize='{FTS_TOKENIZER}')",
            f"DROP TRIGGER IF EXISTS {fts}_insert",
            f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN {sync.insert_new} END",
            f"DROP TRIGGER IF EXISTS {fts}_delete",
            f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN {sync.delete_old} END",
            *_fts_update_trigger(fts, table, col, scoped=scoped, when_changed=when_changed),
            # Index the rows already there (a migrated database); idempotent.
            f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')",
        ]
    return statements


def search_update_triggers(*, when_changed: bool) -> list[str]:
    """SQLite: the DDL that remakes the index's update triggers (migration 0008), in the
    layout of 0008 (``when_changed``) or of 0007."""
    statements: list[str] = []
    for fts, table, col in _FTS_SOURCES:
        statements += _fts_update_trigger(fts, table, col, scoped=True, when_changed=when_changed)
    return statements


def search_create_statements(
    dialect: str, *, config: str, scoped: bool = True, when_changed: bool = True
) -> list[str]:
    """The DDL that adds the full-text index on ``dialect`` and indexes existing rows.

    ``config`` is PostgreSQL's text-search configuration (validated by the settings:
    a plain identifier, so it can be written into the DDL). ``scoped=False``: the layout
    before migration 0007 (no owner in the index), for the migrations that made it;
    ``when_changed=False``: SQLite's update triggers as before migration 0008.
    """
    if dialect == "postgresql":
        column = (
            f"ALTER TABLE messages ADD COLUMN IF NOT EXISTS {SEARCH_VECTOR} tsvector"
            f" GENERATED ALWAYS AS (to_tsvector('{config}'::regconfig, content)) STORED"
        )
        if not scoped:
            return [
                column,
                f"CREATE INDEX IF NOT EXISTS {UNSCOPED_SEARCH_INDEX} ON messages"
                f" USING gin ({SEARCH_VECTOR})",
            ]
        return [
            column,
            "CREATE EXTENSION IF NOT EXISTS btree_gin",
            f"CREATE INDEX IF NOT EXISTS {SEARCH_INDEX} ON messages"
            f" USING gin (user_id, {SEARCH_VECTOR})",
            f"DROP INDEX IF EXISTS {UNSCOPED_SEARCH_INDEX}",
        ]
    if dialect == "sqlite":
        return _sqlite_fts_statements(scoped=scoped, when_changed=when_changed)
    return []


def search_drop_statements(dialect: str) -> list[str]:
    """The DDL that removes the full-text index (the messages themselves stay)."""
    if dialect == "postgresql":
        return [
            f"DROP INDEX IF EXISTS {SEARCH_INDEX}",
            f"DROP INDEX IF EXISTS {UNSCOPED_SEARCH_INDEX}",
            f"ALTER TABLE messages DROP COLUMN IF EXISTS {SEARCH_VECTOR}",
        ]
    if dialect == "sqlite":
        statements = []
        for fts, _table, _col in _FTS_SOURCES:
            statements += [f"DROP TRIGGER IF EXISTS {fts}_{op}" for op in _FTS_TRIGGER_OPS]
            statements.append(f"DROP TABLE IF EXISTS {fts}")
            statements.append(f"DROP VIEW IF EXISTS {_source_view(fts)}")
        return statements
    return []


_FTS_TRIGGER_OPS = ("insert", "delete", "update")


def is_search_table(name: str | None) -> bool:
    """Whether ``name`` is one of the FTS5 tables (or their shadow tables, ``<fts>_data``,
    ``_idx``, ``_config``, ``_docsize``) that SQLite's search index consists of."""
    shadows = ("data", "idx", "config", "docsize", "content")
    return name is not None and any(
        name == fts or name in {f"{fts}_{s}" for s in shadows} for fts, _t, _c in _FTS_SOURCES
    )


def search_trigger_names(dialect: str) -> list[str]:
    """The triggers that keep the full-text index in sync (SQLite; PostgreSQL needs none)."""
    if dialect != "sqlite":
        return []
    return [f"{fts}_{op}" for fts, _t, _c in _FTS_SOURCES for op in _FTS_TRIGGER_OPS]


def pg_search_config(conn: Any) -> str | None:
    """The configuration the live ``search_vector`` column was built with (``None``: no
    such column)."""
    expr = conn.exec_driver_sql(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
        " JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        f" WHERE a.attrelid = to_regclass('messages') AND a.attname = '{SEARCH_VECTOR}'"
        " AND a.attgenerated = 's'"
    ).scalar()
    if expr is None:
        return None
    # to_tsvector('simple'::regconfig, content)
    return str(expr).split("'")[1] if "'" in str(expr) else str(expr)
