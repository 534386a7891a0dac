"""The models used as models: ORM sessions (sync and async) and raw SQL beside the store.

The database (or on SQLite's ORM path, convostore's flush hook) assigns what the seeds leave
out, under the conversation's lock, so every guarantee of the store's appends holds here too.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from convostore import Store, ValidationError
from convostore.db import make_async_engine, make_engine
from convostore.models import Conversation, Message

WRITERS = 8
EACH = 5


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = make_engine(db_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def _conversation(engine: Engine, user: str = "alice") -> int:
    with Session(engine) as session:
        conv = Conversation(user_id=user)
        session.add(conv)
        session.commit()
        assert conv.id is not None
        return conv.id


def _rows(engine: Engine, cid: int) -> list[tuple[int, str, str, datetime]]:
    with Session(engine) as session:
        found = session.exec(
            select(Message).where(Message.conversation_id == cid).order_by(Message.created_at)
        ).all()
        return [(m.position, m.content, m.user_id, m.created_at) for m in found]  # type: ignore[misc]


def test_orm_insert_gets_position_owner_and_time_from_the_conversation(engine: Engine) -> None:
    cid = _conversation(engine)
    with Session(engine) as session:
        msg = Message(conversation_id=cid, role="user", content="hi")
        session.add(msg)
        session.flush()
        # Read back in the same transaction, before any commit.
        assert (msg.position, msg.user_id) == (1, "alice")
        assert msg.created_at is not None and msg.created_at.tzinfo is not None
        session.commit()
        conv = session.get(Conversation, cid)
        assert conv is not None and conv.message_count == 1
        assert conv.updated_at == msg.created_at


def test_several_messages_in_one_commit_order_by_created_at_as_by_position(engine: Engine) -> None:
    cid = _conversation(engine)
    with Session(engine) as session:
        session.add_all(
            [Message(conversation_id=cid, role="user", content=str(i)) for i in range(50)]
        )
        session.commit()
    rows = _rows(engine, cid)
    assert [r[0] for r in rows] == list(range(1, 51))
    assert [r[1] for r in rows] == [str(i) for i in range(50)]
    times = [r[3] for r in rows]
    assert all(a < b for a, b in zip(times, times[1:], strict=False)), "created_at ties"


def test_concurrent_orm_sessions_give_gapless_positions(engine: Engine) -> None:
    cid = _conversation(engine)
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            barrier.wait()
            for i in range(EACH):
                with Session(engine) as session:
                    session.add(Message(conversation_id=cid, role="user", content=f"{w}-{i}"))
                    session.commit()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = _rows(engine, cid)
    assert [r[0] for r in rows] == list(range(1, WRITERS * EACH + 1))
    for w in range(WRITERS):  # each writer's own order is kept
        mine = [r[1] for r in rows if r[1].startswith(f"{w}-")]
        assert mine == [f"{w}-{i}" for i in range(EACH)]
    times = [r[3] for r in rows]
    assert all(a < b for a, b in zip(times, times[1:], strict=False))


async def test_concurrent_async_sessions_give_gapless_positions(db_url: str) -> None:
    engine = make_async_engine(db_url)
    try:
        async with AsyncSession(engine) as session:
            conv = Conversation(user_id="alice")
            session.add(conv)
            await session.commit()
            await session.refresh(conv)
            cid = conv.id

        async def writer(w: int) -> None:
            for i in range(EACH):
                async with AsyncSession(engine) as s:
                    s.add(Message(conversation_id=cid, role="user", content=f"{w}-{i}"))
                    await s.commit()

        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        async with AsyncSession(engine) as session:
            result = await session.exec(
                select(Message.position).where(Message.conversation_id == cid)
            )
            positions = sorted(result.all())
    finally:
        await engine.dispose()
    assert positions == list(range(1, WRITERS * EACH + 1))


def test_store_orm_and_raw_sql_mixed_in_one_conversation_stay_gapless(
    store: Store, engine: Engine
) -> None:
    conv = store.create_conversation("alice")
    store.append_messages("alice", conv.id, [{"role": "user", "content": "s1"}] * 2)
    with Session(engine) as session:
        session.add(Message(conversation_id=conv.id, role="assistant", content="orm"))
        session.commit()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (conversation_id, role, content) VALUES (:c, 'user', 'raw')"
            ),
            {"c": conv.id},
        )
    store.append_message("alice", conv.id, {"role": "assistant", "content": "s2"})
    stored = store.get_messages("alice", conv.id)
    assert [(m.position, m.content) for m in stored] == [
        (1, "s1"),
        (2, "s1"),
        (3, "orm"),
        (4, "raw"),
        (5, "s2"),
    ]
    assert [m.created_at for m in stored] == sorted({m.created_at for m in stored})
    assert store.get_conversation("alice", conv.id).message_count == 5
    # The store's own view of the ORM rows: an ordinary history.
    assert [m["content"] for m in store.get_history("alice", conv.id)] == [
        "s1",
        "s1",
        "orm",
        "raw",
        "s2",
    ]


def test_a_message_for_a_missing_or_foreign_conversation_is_a_foreign_key_error(
    engine: Engine,
) -> None:
    cid = _conversation(engine, "alice")
    for bad in (
        Message(conversation_id=9999, role="user", content="x"),
        Message(conversation_id=cid, user_id="mallory", role="user", content="x"),
    ):
        with Session(engine) as session:
            session.add(bad)
            with pytest.raises(IntegrityError) as caught:
                session.commit()
            assert "foreign key" in str(caught.value.orig).lower()
    with engine.begin() as conn:
        with pytest.raises(IntegrityError):
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content)"
                    " VALUES (9999, 'user', 'x')"
                )
            )
    assert _rows(engine, cid) == []
    with Session(engine) as session:
        conv = session.get(Conversation, cid)
        assert conv is not None and conv.message_count == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"role": "robot", "content": "x"}, "role"),
        ({"role": "user", "content": ""}, "content"),
        ({"role": "user", "content": " \n\t "}, "content"),
        ({"role": "user", "content": "x" * 10_001}, "content"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
    ],
)
def test_seed_000_validation_on_the_orm_path_writes_nothing(
    engine: Engine, fields: dict[str, str], field: str
) -> None:
    cid = _conversation(engine)
    with Session(engine) as session:
        session.add(Message(conversation_id=cid, **fields))
        with pytest.raises(ValidationError) as caught:
            session.commit()
        assert caught.value.field == field
    assert _rows(engine, cid) == []
    with Session(engine) as session:
        conv = session.get(Conversation, cid)
        assert conv is not None and conv.message_count == 0


def test_explicit_and_naive_times_are_stored_as_given_in_utc(engine: Engine) -> None:
    cid = _conversation(engine)
    # What datetime.utcnow() gives: a naive UTC time.
    naive = datetime(2026, 1, 22, 12, 0, 0, 123456, tzinfo=UTC).replace(tzinfo=None)
    with Session(engine) as session:
        session.add(Message(conversation_id=cid, role="user", content="x", created_at=naive))
        session.commit()
    [(_, _, _, stored)] = _rows(engine, cid)
    assert stored == naive.replace(tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)


def test_deleting_through_the_orm_cascades_at_the_database(engine: Engine) -> None:
    cid = _conversation(engine)
    keep = _conversation(engine, "bob")
    with Session(engine) as session:
        session.add_all(
            [
                Message(conversation_id=cid, role="user", content="a"),
                Message(conversation_id=keep, role="user", content="b"),
            ]
        )
        session.commit()
        conv = session.get(Conversation, cid)
        session.delete(conv)
        session.commit()
    assert _rows(engine, cid) == []
    assert [r[1] for r in _rows(engine, keep)] == ["b"]
