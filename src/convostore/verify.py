"""``convostore db verify``: the seeds' schema checks, run against a live database.

Structure is read with SQLAlchemy's inspector; behaviour (a foreign-key violation is
rejected, cascades delete, the owner rule holds, bad roles and positions are refused) is
exercised on throw-away rows inside one transaction that is always rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import column, delete, func, inspect, select, text
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from convostore import _ddl, _sql
from convostore.config import get_settings
from convostore.migrate import TABLES
from convostore.models import OWNS_USERS, USERS_TABLE, schema_metadata
from convostore.types import utcnow

__all__ = ["Check", "verify"]

_PROBE_USER = "__convostore_verify__"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str = ""


def _structure(conn: Connection) -> list[Check]:
    insp = inspect(conn)
    checks: list[Check] = []
    present = set(insp.get_table_names())
    for name in sorted(TABLES):
        checks.append(Check(f"table {name}", name in present))
    for table in schema_metadata(conn).sorted_tables:
        if table.name not in TABLES or table.name not in present:
            continue
        live = {c["name"]: c for c in insp.get_columns(table.name)}
        for col in table.columns:
            got = live.get(col.name)
            if got is None:
                checks.append(Check(f"column {table.name}.{col.name}", False, "missing"))
                continue
            ok = bool(got["nullable"]) == bool(col.nullable)
            checks.append(
                Check(
                    f"column {table.name}.{col.name}",
                    ok,
                    f"{got['type']}, {'NULL' if got['nullable'] else 'NOT NULL'}",
                )
            )
        live_indexes = {i["name"] for i in insp.get_indexes(table.name)}
        live_indexes |= {u["name"] for u in insp.get_unique_constraints(table.name)}
        expected = {str(i.name) for i in table.indexes} | {
            str(c.name) for c in table.constraints if str(c.name).startswith("uq_")
        }
        for index in sorted(expected):
            checks.append(Check(f"index {index}", index in live_indexes))
        live_fks = {
            (tuple(fk["constrained_columns"]), fk["referred_table"]): fk
            for fk in insp.get_foreign_keys(table.name)
        }
        for fk in table.foreign_key_constraints:
            key = (tuple(c.name for c in fk.columns), fk.referred_table.name)
            got_fk = live_fks.get(key)
            label = f"foreign key {table.name}({', '.join(key[0])}) -> {key[1]}"
            if got_fk is None:
                checks.append(Check(label, False, "missing"))
            else:
                ondelete = (got_fk.get("options") or {}).get("ondelete", "")
                checks.append(
                    Check(label, str(ondelete).upper() == "CASCADE", f"ON DELETE {ondelete or '-'}")
                )
    if conn.dialect.name == "postgresql" and "messages" in present:
        found = conn.exec_driver_sql(
            "SELECT 1 FROM pg_statistic_ext WHERE stxname = 'stx_messages_conversation_user'"
        ).first()
        checks.append(Check("statistics stx_messages_conversation_user", found is not None))
    live_triggers = _ddl.live_triggers(conn)
    for name in _ddl.trigger_names(own_users=OWNS_USERS):
        checks.append(Check(f"trigger {name}", name in live_triggers))
    if "messages" in present:
        checks += _search_structure(conn, present)
    if conn.dialect.name == "sqlite":
        enabled = conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        checks.append(Check("sqlite foreign_keys pragma", enabled, "on" if enabled else "off"))
    return checks


def _search_structure(conn: Connection, present: set[str]) -> list[Check]:
    """The full-text index exists, matches the configuration, and covers every row."""
    if conn.dialect.name == "postgresql":
        want = get_settings().search_config
        got = _ddl.pg_search_config(conn)
        detail = "missing" if got is None else f"config {got}"
        if got is not None and got != want:
            detail += f", but CONVOSTORE_SEARCH_CONFIG is {want}"
        indexes = {i["name"] for i in inspect(conn).get_indexes("messages")}
        return [
            Check(f"search column messages.{_ddl.SEARCH_VECTOR}", got == want, detail),
            Check(f"search index {_ddl.SEARCH_INDEX}", _ddl.SEARCH_INDEX in indexes),
        ]
    if conn.dialect.name != "sqlite":
        return []
    checks = []
    live_triggers = _ddl.live_triggers(conn)
    for fts, table in ((_ddl.MESSAGES_FTS, "messages"), (_ddl.TITLES_FTS, "conversations")):
        if fts not in present:
            checks.append(Check(f"search table {fts}", False, "missing"))
            continue
        # An external-content index holds one docsize row per indexed row.
        indexed, rows, ddl = conn.exec_driver_sql(
            f"SELECT (SELECT count(*) FROM {fts}_docsize), (SELECT count(*) FROM {table}),"
            f" (SELECT sql FROM sqlite_master WHERE name = '{fts}')"
        ).one()
        detail = f"{indexed} of {rows} rows indexed"
        if indexed != rows:
            detail += f"; rebuild: INSERT INTO {fts} ({fts}) VALUES ('rebuild')"
        # Before migration 0007 the index had no owner column: searches would fail.
        scoped = _ddl.OWNER_COLUMN in str(ddl)
        if not scoped:
            detail += f", no {_ddl.OWNER_COLUMN} column (run convostore db upgrade)"
        checks.append(Check(f"search table {fts}", indexed == rows and scoped, detail))
    for name in _ddl.search_trigger_names("sqlite"):
        checks.append(Check(f"trigger {name}", name in live_triggers))
    return checks


_PROBE_WORD = "convostoreverifyprobe"


def _search_probe(conn: Connection, conv_id: int, user: str, now: Any) -> Check:
    """A new message is found by the index at once, and gone from it once deleted."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        config = get_settings().search_config
        found_sql = (
            f"SELECT count(*) FROM messages WHERE id = :id AND {_ddl.SEARCH_VECTOR}"
            f" @@ websearch_to_tsquery('{config}'::regconfig, '{_PROBE_WORD}')"
        )
    else:
        found_sql = (
            f"SELECT count(*) FROM {_ddl.MESSAGES_FTS} WHERE rowid = :id"
            f" AND {_ddl.MESSAGES_FTS} MATCH '\"{_PROBE_WORD}\"'"
        )
    try:
        with conn.begin_nested():
            msg_id = conn.execute(
                _sql.M.insert()
                .values(
                    conversation_id=conv_id,
                    user_id=user,
                    position=1000,
                    role="assistant",
                    content=f"probe {_PROBE_WORD}",
                    created_at=now,
                )
                .returning(_sql.M.c.id)
            ).scalar_one()
            found = conn.execute(text(found_sql), {"id": msg_id}).scalar_one()
            conn.execute(delete(_sql.M).where(_sql.M.c.id == msg_id))
            left = conn.execute(text(found_sql), {"id": msg_id}).scalar_one()
    except DBAPIError as exc:
        return Check("search index follows inserts and deletes", False, type(exc.orig).__name__)
    ok = found == 1 and left == 0
    return Check(
        "search index follows inserts and deletes", ok, f"found {found}, after delete {left}"
    )


def _rejected(conn: Connection, name: str, action: Callable[[], Any]) -> Check:
    try:
        with conn.begin_nested():
            action()
    except DBAPIError as exc:
        return Check(name, True, f"rejected: {type(exc.orig).__name__}")
    return Check(name, False, "the database accepted it")


def _cascades(
    conn: Connection, name: str, delete: Callable[[], Any], left: Callable[[], int]
) -> Check:
    try:
        with conn.begin_nested():
            delete()
            remaining = left()
    except DBAPIError as exc:
        return Check(name, False, f"delete refused: {type(exc.orig).__name__}")
    return Check(name, remaining == 0, f"{remaining} left")


def _probe_users(conn: Connection) -> tuple[str, str] | None:
    """Two user ids to probe with: convostore's own throw-away ones, or two of the host's."""
    if OWNS_USERS:
        return _PROBE_USER, _PROBE_USER + "_other"
    host = sql_table(USERS_TABLE, column("id"))
    ids = [str(r[0]) for r in conn.execute(select(host.c.id).order_by(host.c.id).limit(2))]
    return (ids[0], ids[1]) if len(ids) == 2 else None


def _behaviour(conn: Connection) -> list[Check]:
    now = utcnow()
    probe_users = _probe_users(conn)
    if probe_users is None:
        return [
            Check(
                "behaviour probes",
                True,
                f"skipped: {USERS_TABLE} needs two users to probe with (nothing is written)",
            )
        ]
    probe, other = probe_users
    pg = conn.dialect.name == "postgresql"
    for user in probe_users:
        if (stmt := _sql.upsert_user(pg, user, now)) is not None:
            conn.execute(stmt)
    conv_id = conn.execute(
        _sql.INSERT_CONVERSATION[pg], _sql.new_conversation(probe, "verify", None, now)
    ).one()[0]

    def message(
        cid: int, user: str = probe, role: str = "user", pos: int = 1, status: str = "complete"
    ) -> int:
        return int(
            conn.execute(
                _sql.M.insert()
                .values(
                    conversation_id=cid,
                    user_id=user,
                    position=pos,
                    role=role,
                    content="x",
                    created_at=now,
                    status=status,
                )
                .returning(_sql.M.c.id)
            ).scalar_one()
        )

    def count(table: Any, where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())

    checks = [
        _rejected(conn, "message for a missing conversation", lambda: message(-1)),
        _rejected(conn, "message owned by another user", lambda: message(conv_id, user=other)),
        _rejected(conn, "message with an unknown role", lambda: message(conv_id, role="robot")),
        _rejected(conn, "message at position 0", lambda: message(conv_id, pos=0)),
    ]
    checks.append(
        _rejected(conn, "message with an unknown status", lambda: message(conv_id, status="x"))
    )
    message(conv_id)
    checks.append(_rejected(conn, "duplicate position", lambda: message(conv_id)))
    checks.append(_search_probe(conn, conv_id, probe, now))
    streaming = message(conv_id, pos=2, status="streaming")
    checks.append(
        _rejected(
            conn,
            "second streaming reply in a conversation",
            lambda: message(conv_id, pos=3, status="streaming"),
        )
    )
    chunk = {"message_id": streaming, "user_id": probe, "seq": 0, "text": "x", "created_at": now}
    conn.execute(_sql.K.insert().values(**chunk))
    checks.append(
        _cascades(
            conn,
            "delete message cascades to its chunks",
            lambda: conn.execute(delete(_sql.M).where(_sql.M.c.id == streaming)),
            lambda: count(_sql.K, _sql.K.c.message_id == streaming),
        )
    )

    checks.append(
        _cascades(
            conn,
            "delete conversation cascades to messages",
            lambda: conn.execute(_sql.DELETE_CONVERSATION, _sql.owned_params(probe, conv_id, now)),
            lambda: count(_sql.M, _sql.M.c.conversation_id == conv_id),
        )
    )
    conv_id = conn.execute(
        _sql.INSERT_CONVERSATION[pg], _sql.new_conversation(probe, "verify", None, now)
    ).one()[0]
    message(conv_id)
    users = sql_table(USERS_TABLE, column("id"))
    checks.append(
        _cascades(
            conn,
            "delete user cascades to conversations and messages",
            lambda: conn.execute(delete(users).where(users.c.id == probe)),
            lambda: (
                count(_sql.C, _sql.C.c.user_id == probe) + count(_sql.M, _sql.M.c.user_id == probe)
            ),
        )
    )
    return checks


def verify(engine: Engine) -> list[Check]:
    """Every check, structure first; the behaviour probes leave nothing behind."""
    with engine.connect() as conn:
        checks = _structure(conn)
        conn.rollback()
        broken = [c for c in checks if c.name.startswith(("table ", "column ")) and not c.ok]
        if broken:
            checks.append(Check("behaviour probes", False, "skipped: tables or columns missing"))
            return checks
        trans = conn.begin()
        try:
            checks += _behaviour(conn)
        except DBAPIError as exc:
            checks.append(Check("behaviour probes", False, f"failed: {type(exc.orig).__name__}"))
        finally:
            trans.rollback()
    return checks
