"""Retention: expiring and temporary conversations, holds, and the purge, on a clock the
tests move (``Store(clock=...)``), on both databases and both stores."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from convostore import AsyncStore, NotFoundError, Store, ValidationError
from convostore.db import make_engine
from convostore.retention import format_retention, normalize_retention, parse_retention
from tests.conftest import MaybeAsync

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test sets; every store call reads it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, **delta: float) -> None:
        self.now = T0 + timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sync", "async"])
async def rapi(
    request: pytest.FixtureRequest, db_url: str, clock: Clock
) -> AsyncIterator[MaybeAsync]:
    """The store under test with the test's clock; temporary chats live 1 h by default."""
    options: dict[str, Any] = {"clock": clock, "temporary_retention": "1h"}
    if request.param == "sync":
        with Store(db_url, **options) as s:
            yield MaybeAsync(s)
    else:
        async with AsyncStore(db_url, **options) as a:
            yield MaybeAsync(a)


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


# ------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("text_", "seconds", "canonical"),
    [
        ("30d", 30 * 86_400, "30d"),
        ("12h", 12 * 3_600, "12h"),
        ("720h", 30 * 86_400, "30d"),
        ("90m", 5_400, "90m"),
        ("2w", 14 * 86_400, "14d"),
        (" 45 S ", 45, "45s"),
        ("none", None, "none"),
        ("NONE", None, "none"),
    ],
)
def test_policies_parse_to_seconds(text_: str, seconds: int | None, canonical: str) -> None:
    assert parse_retention(text_) == seconds
    assert normalize_retention(text_) == canonical
    assert parse_retention(timedelta(days=1)) == 86_400
    assert format_retention(3_601) == "3601s"


@pytest.mark.parametrize("bad", ["", "30", "d", "0d", "-1d", "1y", "1.5h", "5000000w", 30, None])
def test_bad_policies_name_the_field(bad: Any) -> None:
    with pytest.raises(ValidationError) as err:
        parse_retention(bad, "retention")
    assert err.value.field == "retention"


def test_settings_validate_the_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError as SettingsError

    from convostore.config import Settings

    assert Settings().retention == "none" and Settings().temporary_retention == "1d"
    monkeypatch.setenv("CONVOSTORE_RETENTION", "720h")
    assert Settings().retention == "30d"
    monkeypatch.setenv("CONVOSTORE_TEMPORARY_RETENTION", "soon")
    with pytest.raises(SettingsError, match="temporary_retention"):
        Settings()


async def test_no_policy_means_no_expiry(rapi: MaybeAsync) -> None:
    conv = await rapi.create_conversation("alice")
    assert (conv.expires_at, conv.retention, conv.temporary, conv.hold) == (
        None,
        None,
        False,
        False,
    )
    await rapi.append_message("alice", conv.id, {"role": "user", "content": "hi"})
    assert (await rapi.get_conversation("alice", conv.id)).expires_at is None


async def test_expiry_counts_from_the_last_activity(rapi: MaybeAsync, clock: Clock) -> None:
    conv = await rapi.create_conversation("alice", title="Trip", retention="1h")
    assert conv.retention == "1h" and conv.expires_at == T0 + timedelta(hours=1)
    clock.set(minutes=50)
    msg = await rapi.append_message("alice", conv.id, {"role": "user", "content": "still here"})
    conv = await rapi.get_conversation("alice", conv.id)
    # Appended at 12:50: alive until 13:50, not 13:00.
    assert conv.expires_at == msg.created_at + timedelta(hours=1)
    clock.set(minutes=100)
    assert (await rapi.get_conversation("alice", conv.id)).id == conv.id
    many = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    await rapi.append_messages("alice", conv.id, many)
    conv = await rapi.get_conversation("alice", conv.id)
    assert conv.expires_at == T0 + timedelta(minutes=160)


async def test_expired_is_gone_for_every_reader_at_once(
    rapi: MaybeAsync, clock: Clock, raw: Engine
) -> None:
    """Before any purge: NotFound everywhere, absent from lists, search and history."""
    doomed = await rapi.create_conversation(
        "alice", title="budget doomed", retention="1h", external_id="ext-1"
    )
    await rapi.append_message("alice", doomed.id, {"role": "user", "content": "budget words"})
    kept = await rapi.create_conversation("alice", title="budget kept")
    await rapi.append_message("alice", kept.id, {"role": "user", "content": "budget words"})
    assert len((await rapi.search("alice", "budget")).data) == 4
    clock.set(hours=2)
    cid = doomed.id
    for call in (
        rapi.get_conversation("alice", cid),
        rapi.get_messages("alice", cid),
        rapi.list_messages("alice", cid),
        rapi.last_messages("alice", cid, 5),
        rapi.get_history("alice", cid, max_tokens=100),
        rapi.update_conversation("alice", cid, title="x"),
        rapi.update_conversation("alice", cid, hold=True),
        rapi.delete_conversation("alice", cid),
        rapi.pop_message("alice", cid),
        rapi.delete_messages_after("alice", cid, 0),
        rapi.append_message("alice", cid, {"role": "user", "content": "revive?"}),
        rapi.append_messages("alice", cid, [{"role": "user", "content": "revive?"}] * 2),
        rapi.append_messages("alice", cid, []),
        rapi.get_conversation_by_external_id("alice", "ext-1"),
    ):
        with pytest.raises(NotFoundError):
            await call
    assert [c.id for c in (await rapi.list_conversations("alice")).data] == [kept.id]
    hits = (await rapi.search("alice", "budget")).data
    assert {h.conversation_id for h in hits} == {kept.id} and len(hits) == 2
    assert (await rapi.search("alice", "budget", conversation_id=cid)).data == []
    # The failed appends wrote nothing and did not move the expiry (no resurrection).
    assert count(raw, "SELECT count(*) FROM messages WHERE conversation_id = :c", c=cid) == 1
    clock.set(minutes=30)
    again = await rapi.get_conversation("alice", cid)
    assert again.message_count == 1 and again.expires_at == doomed.expires_at


async def test_hold_keeps_a_conversation_past_its_expiry(
    rapi: MaybeAsync, clock: Clock, raw: Engine
) -> None:
    conv = await rapi.create_conversation("alice", retention="1h")
    held = await rapi.update_conversation("alice", conv.id, hold=True)
    assert held.hold and held.expires_at == conv.expires_at
    clock.set(days=30)
    assert (await rapi.get_conversation("alice", conv.id)).hold
    report = await rapi.purge_expired()
    assert report.conversations == 0
    released = await rapi.update_conversation("alice", conv.id, hold=False)
    assert not released.hold
    with pytest.raises(NotFoundError):
        await rapi.get_conversation("alice", conv.id)
    assert (await rapi.purge_expired()).conversations == 1
    assert count(raw, "SELECT count(*) FROM conversations") == 0
    with pytest.raises(ValidationError, match="hold"):
        await rapi.update_conversation("alice", conv.id, hold="yes")


async def test_temporary_chats_go_first(rapi: MaybeAsync, clock: Clock, raw: Engine) -> None:
    normal = await rapi.create_conversation("alice", retention="30d")
    temp = await rapi.create_conversation("alice", temporary=True)
    assert temp.temporary and temp.retention == "1h" and temp.expires_at is not None
    assert normal.expires_at is not None and temp.expires_at < normal.expires_at
    clock.set(hours=2)
    assert [c.id for c in (await rapi.list_conversations("alice")).data] == [normal.id]
    report = await rapi.purge_expired()
    assert (report.conversations, report.temporary) == (1, 1)
    with raw.connect() as conn:
        stones = conn.execute(
            text("SELECT conversation_id, user_id, reason, deleted_at FROM convostore_tombstones")
        ).all()
    assert [tuple(s[:3]) for s in stones] == [(temp.id, "alice", "temporary")]
    # A temporary chat with a policy of its own keeps it.
    own = await rapi.create_conversation("alice", temporary=True, retention="5m")
    assert own.retention == "5m"
    with pytest.raises(ValidationError, match="temporary"):
        await rapi.create_conversation("alice", temporary="yes")
    with pytest.raises(ValidationError, match="retention"):
        await rapi.create_conversation("alice", retention="soon")


async def test_user_policy_overrides_the_global_one(rapi: MaybeAsync, clock: Clock) -> None:
    assert (await rapi.get_retention_policy("alice")).retention is None
    policy = await rapi.set_retention_policy("alice", retention="48h", temporary_retention="none")
    assert (policy.retention, policy.temporary_retention) == ("2d", "none")
    conv = await rapi.create_conversation("alice")
    temp = await rapi.create_conversation("alice", temporary=True)
    other = await rapi.create_conversation("bob")
    assert conv.retention == "2d" and conv.expires_at == T0 + timedelta(days=2)
    assert temp.expires_at is None and other.expires_at is None
    # Back to the global default for new conversations; existing ones keep theirs.
    policy = await rapi.set_retention_policy("alice", retention=None)
    assert (policy.retention, policy.temporary_retention) == (None, "none")
    assert (await rapi.create_conversation("alice")).expires_at is None
    assert (await rapi.get_conversation("alice", conv.id)).retention == "2d"
    with pytest.raises(ValidationError, match="temporary_retention"):
        await rapi.set_retention_policy("alice", temporary_retention="forever")


async def test_global_default_from_the_store(db_url: str, clock: Clock) -> None:
    with Store(db_url, clock=clock, retention="7d") as store:
        conv = store.create_conversation("alice")
        assert conv.retention == "7d" and conv.expires_at == T0 + timedelta(days=7)
        got = store.get_or_create_conversation("alice", "ext")
        assert got.retention == "7d"


async def test_patch_sets_or_clears_a_conversations_policy(rapi: MaybeAsync, clock: Clock) -> None:
    conv = await rapi.create_conversation("alice")
    clock.set(minutes=10)
    msg = await rapi.append_message("alice", conv.id, {"role": "user", "content": "hi"})
    clock.set(minutes=20)
    conv = await rapi.update_conversation("alice", conv.id, retention="1d")
    # From the last activity (the message at 12:10), not from the PATCH.
    assert conv.retention == "1d" and conv.expires_at == msg.created_at + timedelta(days=1)
    conv = await rapi.update_conversation("alice", conv.id, retention="none")
    assert conv.retention is None and conv.expires_at is None
    for bad in (None, "1 year", 5):
        with pytest.raises(ValidationError, match="retention"):
            await rapi.update_conversation("alice", conv.id, retention=bad)


async def test_an_expired_external_id_is_free_again(
    rapi: MaybeAsync, clock: Clock, raw: Engine
) -> None:
    old = await rapi.create_conversation("alice", external_id="thread", retention="1h")
    clock.set(hours=2)
    new = await rapi.get_or_create_conversation("alice", "thread")
    assert new.id != old.id and new.expires_at is None
    clock.set(hours=3)
    with pytest.raises(Exception, match="external_id"):
        await rapi.create_conversation("alice", external_id="thread")
    assert count(raw, "SELECT count(*) FROM convostore_tombstones") == 1


# ---------------------------------------------------------------------------- purge


async def test_purge_deletes_in_batches_and_cascades(
    rapi: MaybeAsync, clock: Clock, raw: Engine
) -> None:
    doomed = []
    for i in range(5):
        conv = await rapi.create_conversation("alice", title=f"gone {i}", retention="1h")
        await rapi.append_messages(
            "alice", conv.id, [{"role": "user", "content": f"secret{i} words"}] * 2
        )
        doomed.append(conv.id)
    live = await rapi.create_conversation("alice", title="alive")
    await rapi.append_message("alice", live.id, {"role": "user", "content": "secret0 words"})
    clock.set(hours=2)
    dry = await rapi.purge_expired(dry_run=True)
    assert (dry.dry_run, dry.conversations, dry.messages) == (True, 5, 10)
    assert count(raw, "SELECT count(*) FROM conversations") == 6
    seen: list[int] = []
    report = await rapi.purge_expired(batch_size=2, on_batch=lambda r: seen.append(r.conversations))
    assert (report.conversations, report.messages, report.batches) == (5, 10, 3)
    assert seen == [2, 4, 5]
    assert count(raw, "SELECT count(*) FROM conversations") == 1
    assert count(raw, "SELECT count(*) FROM messages") == 1
    assert count(raw, "SELECT count(DISTINCT conversation_id) FROM convostore_tombstones") == 5
    # The search index follows: even with the clock back, nothing of theirs is found.
    clock.set(minutes=0)
    hits = (await rapi.search("alice", "secret0")).data
    assert {h.conversation_id for h in hits} == {live.id}
    if raw.dialect.name == "sqlite":
        assert count(raw, "SELECT count(*) FROM messages_fts_docsize") == 1
        assert count(raw, "SELECT count(*) FROM conversations_fts_docsize") == 1
    assert (await rapi.purge_expired()).conversations == 0
    with pytest.raises(ValidationError, match="batch_size"):
        await rapi.purge_expired(batch_size=0)


async def test_purge_now_is_a_parameter(rapi: MaybeAsync, clock: Clock) -> None:
    conv = await rapi.create_conversation("alice", retention="1h")
    assert (await rapi.purge_expired(now=T0 + timedelta(minutes=59))).conversations == 0
    assert (await rapi.purge_expired(now=T0 + timedelta(hours=1))).conversations == 1
    with pytest.raises(NotFoundError):
        await rapi.get_conversation("alice", conv.id)


def _threads(*targets: Any) -> list[Any]:
    """Run the callables in threads released together; their results (or exceptions)."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = targets[i]()
        except Exception as exc:  # reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_append_racing_the_purge_lands_before_or_is_not_found(
    db_url: str, clock: Clock, raw: Engine
) -> None:
    """Each append either commits first (and the purge, re-checking, spares the extended
    conversation) or finds it gone; never a message in a deleted conversation, never a
    conversation deleted after an acknowledged append."""
    n = 60
    with Store(db_url, clock=clock, pool_size=4) as writer, Store(db_url, clock=clock) as purger:
        ids = [writer.create_conversation("alice", retention="1h").id for _ in range(n)]
        clock.set(minutes=30)  # the appender lives at 12:30: each append extends to 13:30
        cutoff = T0 + timedelta(hours=1, seconds=1)  # the purge sees them expired at 13:00

        def append_all() -> dict[int, bool]:
            outcome = {}
            for cid in ids:
                try:
                    writer.append_message("alice", cid, {"role": "user", "content": "race"})
                    outcome[cid] = True
                except NotFoundError:
                    outcome[cid] = False
            return outcome

        def purge() -> int:
            return sum(
                purger.purge_expired(batch_size=3, now=cutoff).conversations for _ in range(3)
            )

        appended, purged = _threads(append_all, purge)
    assert isinstance(appended, dict) and isinstance(purged, int), (appended, purged)
    with raw.connect() as conn:
        rows = {
            r[0]: (r[1], r[2])
            for r in conn.execute(text("SELECT id, message_count, expires_at FROM conversations"))
        }
        messages = dict(
            conn.execute(
                text("SELECT conversation_id, count(*) FROM messages GROUP BY conversation_id")
            ).all()
        )
        stones = {
            r[0] for r in conn.execute(text("SELECT conversation_id FROM convostore_tombstones"))
        }
    for cid in ids:
        if appended[cid]:
            assert cid in rows and rows[cid][0] == 1 and messages.get(cid) == 1
        else:
            assert cid not in rows and cid in stones and cid not in messages
    assert set(rows) | stones == set(ids) and not set(rows) & stones
    assert purged == len(stones)


def test_two_purgers_delete_each_conversation_once(db_url: str, raw: Engine) -> None:
    n = 300
    with raw.begin() as conn:
        _bulk_expired(conn, n, messages=True)
    stores = [Store(db_url) for _ in range(2)]
    try:
        reports = _threads(*(lambda s=s: s.purge_expired(batch_size=7) for s in stores))
    finally:
        for s in stores:
            s.close()
    assert all(not isinstance(r, Exception) for r in reports), reports
    assert sum(r.conversations for r in reports) == n
    assert sum(r.messages for r in reports) == n
    assert count(raw, "SELECT count(*) FROM convostore_tombstones") == n
    assert count(raw, "SELECT count(DISTINCT conversation_id) FROM convostore_tombstones") == n
    assert count(raw, "SELECT count(*) FROM conversations") == 0


def _bulk_expired(conn: Any, n: int, *, messages: bool, live: int = 0) -> None:
    """``n`` conversations expired a day ago (ids 1..n, one message each if ``messages``) and
    ``live`` ones with no expiry, loaded in a few set-based statements."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        series = "SELECT g AS x FROM generate_series(1, :n) AS g"
        past, now = "now() - interval '2 days'", "now()"
        expires = "now() - interval '1 day'"
        boolean = "false"
    else:
        series = "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < :n)"
        series += " SELECT x FROM s"
        past = "strftime('%Y-%m-%d %H:%M:%f000', 'now', '-2 days')"
        now = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
        expires = "strftime('%Y-%m-%d %H:%M:%f000', 'now', '-1 day')"
        boolean = "0"
    users = "convostore_users"
    conn.execute(
        text(
            f"INSERT INTO {users} (id, created_at) SELECT 'u' || x, {now} FROM ({series}) AS t"
            " WHERE x <= 100"
        ),
        {"n": 100},
    )
    for total, exp in ((n, expires), (live, "NULL")):
        if not total:
            continue
        first = count_rows(conn, "conversations") + 1
        conn.execute(
            text(
                "INSERT INTO conversations (id, user_id, title, message_count, created_at,"
                " updated_at, expires_at, retention_seconds, temporary, hold)"
                f" SELECT x + :first - 1, 'u' || (x % 100 + 1), NULL, {int(messages)}, {past},"
                f" {past}, {exp}, 86400, {boolean}, {boolean} FROM ({series}) AS t"
            ),
            {"n": total, "first": first},
        )
        if messages:
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, user_id, position, role, content,"
                    f" created_at) SELECT x + :first - 1, 'u' || (x % 100 + 1), 1, 'user',"
                    f" 'bulk words ' || x, {past} FROM ({series}) AS t"
                ),
                {"n": total, "first": first},
            )
    if pg:
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('conversations', 'id'),"
                " (SELECT max(id) FROM conversations))"
            )
        )
        conn.execute(text("ANALYZE conversations"))


def count_rows(conn: Any, table: str) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.slow
def test_purge_of_100k_leaves_live_conversations_untouched(
    db_url: str, raw: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    n, live = 100_000, 2_000
    with raw.begin() as conn:
        _bulk_expired(conn, n, messages=True, live=live)
    before = {t: count(raw, f"SELECT count(*) FROM {t}") for t in ("conversations", "messages")}
    assert before == {"conversations": n + live, "messages": n + live}
    live_ids = count(raw, "SELECT sum(id) FROM conversations WHERE expires_at IS NULL")
    with Store(db_url) as store:
        started = time.perf_counter()
        report = store.purge_expired(batch_size=5_000)
        took = time.perf_counter() - started
    assert (report.conversations, report.messages, report.batches) == (n, n, 20)
    assert count(raw, "SELECT count(*) FROM conversations") == live
    assert count(raw, "SELECT count(*) FROM messages") == live
    assert count(raw, "SELECT sum(id) FROM conversations") == live_ids
    assert count(raw, "SELECT count(*) FROM convostore_tombstones") == n
    with capsys.disabled():
        print(f"\n  purge {n:,} on {raw.dialect.name}: {took:.1f} s, {n / took:,.0f} conv/s")


def test_library_retention_example_runs(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    from pathlib import Path

    library = Path(__file__).resolve().parents[1] / "docs" / "library.md"
    section = library.read_text("utf-8").split("## Retention", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(match.group(1), "docs/library.md", "exec"), {})


def test_sqlite_purge_reads_only_its_partial_index(tmp_path: Any) -> None:
    from convostore import _sql

    with Store(f"sqlite:///{tmp_path / 'plan.db'}") as store:
        store.migrate()
        query = _sql.compiled(_sql.SQLITE_PURGE_BATCH, store.engine.dialect)
        params = tuple(query.params({"now": T0, "lim": 5}))
        with store.engine.connect() as conn:
            steps = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query.sql, params)]
    assert any("USING INDEX ix_conversations_expires_at" in s for s in steps), steps
    assert not any(s.startswith("SCAN conversations") for s in steps), steps


def test_migration_with_existing_rows_up_and_down(
    pg_database: Any, tmp_path: Any, backend: str
) -> None:
    """0005 on a database with data: existing conversations get no expiry and keep every
    message; its downgrade removes only what it added; upgrading again works."""
    from convostore import migrate

    url = (
        pg_database("retention_migration")
        if backend == "postgresql"
        else (f"sqlite:///{tmp_path / 'm.db'}")
    )
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, "0003")
        with engine.begin() as conn:
            cid = conn.execute(
                text(
                    "INSERT INTO conversations (user_id, title) VALUES ('alice', 'old')"
                    + " RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content)"
                    + " VALUES (:c, 'user', 'kept')"
                ),
                {"c": cid},
            )
        migrate.upgrade(engine)
        assert migrate.check(engine) == []
        with Store(engine, retention="1d") as store:
            conv = store.get_conversation("alice", cid)
            assert (conv.expires_at, conv.hold, conv.temporary, conv.message_count) == (
                None,
                False,
                False,
                1,
            )
            store.append_message("alice", cid, {"role": "user", "content": "new"})
            # The policy of the store applies to new conversations, not to this one.
            assert store.get_conversation("alice", cid).expires_at is None
            assert store.purge_expired(now=T0 + timedelta(days=10_000)).conversations == 0
        migrate.downgrade(engine, "0003")
        columns = {
            c["name"] for c in __import__("sqlalchemy").inspect(engine).get_columns("conversations")
        }
        assert not columns & {"expires_at", "hold", "temporary", "retention_seconds"}
        assert count(engine, "SELECT count(*) FROM messages") == 2
        migrate.upgrade(engine)
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def test_model_inserts_never_resurrect(db_url: str, clock: Clock, raw: Engine) -> None:
    """Around the store (``session.add``): SQLite's path refuses an expired conversation;
    PostgreSQL's trigger stores the row but leaves ``expires_at``: still gone, and purged."""
    from sqlalchemy.exc import IntegrityError
    from sqlmodel import Session

    from convostore.models import Message

    real = Clock(datetime.now(UTC) - timedelta(hours=2))
    with Store(db_url, clock=real) as store:
        conv = store.create_conversation("alice", retention="1h")
        with Session(raw) as session:
            session.add(Message(conversation_id=conv.id, role="user", content="late"))
            if raw.dialect.name == "sqlite":
                with pytest.raises(IntegrityError):
                    session.commit()
            else:
                session.commit()
        real.now = datetime.now(UTC)
        with pytest.raises(NotFoundError):
            store.get_conversation("alice", conv.id)
        assert store.purge_expired().conversations == 1
    assert count(raw, "SELECT count(*) FROM messages") == 0


async def test_a_streamed_reply_follows_the_stores_clock_and_its_conversations_expiry(
    rapi: MaybeAsync, clock: Clock
) -> None:
    conv = await rapi.create_conversation("alice", retention="1h")
    reply = await rapi.begin_message("alice", conv.id)
    assert await rapi.append_delta("alice", reply.id, 0, "Hel")
    clock.set(minutes=30)  # the writer went quiet: the lease (60 s) ran out by the clock
    assert (await rapi.read_stream("alice", reply.id)).message.status == "interrupted"
    clock.set(hours=2)  # and the conversation expired (30 min of inactivity past 1 h)
    calls = [
        lambda: rapi.read_stream("alice", reply.id),
        lambda: rapi.append_delta("alice", reply.id, 1, "lo"),
        lambda: rapi.finish_message("alice", reply.id),
        lambda: rapi.interrupt_message("alice", reply.id),
        lambda: rapi.begin_message("alice", conv.id),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            await call()
