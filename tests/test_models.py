"""The schema contract (SPEC.md "Data model") and the seeds' scenarios, on both databases.

The seeds check their schema with raw SQL and SQLModel sessions; these tests do the same
against the migrated schema, so the database itself (not only Python) is what is tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from convostore import Store, ValidationError
from convostore.db import make_engine
from convostore.models import Conversation, Message, MessageChunk, MessageRole, User


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _user(session: Session, user_id: str) -> User:
    user = User(id=user_id)
    session.add(user)
    session.commit()
    return user


def _conversation(session: Session, user_id: str, title: str | None = None) -> Conversation:
    conv = Conversation(user_id=user_id, title=title)
    session.add(conv)
    session.commit()
    session.refresh(conv)
    return conv


def _message(conv: Conversation, position: int, content: str, **kw: object) -> Message:
    assert conv.id is not None
    fields: dict[str, object] = {
        "conversation_id": conv.id,
        "user_id": conv.user_id,
        "position": position,
        "content": content,
        "role": MessageRole.USER.value,
        **kw,
    }
    return Message(**fields)


def test_models_import_like_the_seeds() -> None:
    from convostore.models import Conversation as C
    from convostore.models import Message as M
    from convostore.models import MessageRole as R
    from convostore.models import User as U

    assert (C.__tablename__, M.__tablename__, U.__tablename__) == (
        "conversations",
        "messages",
        "convostore_users",
    )
    assert {r.value for r in R} == {"user", "assistant", "system", "tool"}


def test_columns_types_and_nullability(engine: Engine) -> None:
    insp = inspect(engine)
    assert {"convostore_users", "conversations", "messages"} <= set(insp.get_table_names())
    cols = {c["name"]: c for c in insp.get_columns("messages")}
    expected_nullable = {
        "id": False,
        "conversation_id": False,
        "user_id": False,
        "position": False,
        "role": False,
        "content": False,
        "tool_calls": True,
        "tool_call_id": True,
        "created_at": False,
    }
    for name, nullable in expected_nullable.items():
        assert cols[name]["nullable"] is nullable, name
    conv = {c["name"]: c for c in insp.get_columns("conversations")}
    assert conv["title"]["nullable"] is True
    assert conv["title"]["type"].length == 255
    assert conv["user_id"]["type"].length == 255
    assert conv["updated_at"]["nullable"] is False
    if engine.dialect.name == "postgresql":
        assert conv["created_at"]["type"].timezone is True
        assert type(cols["tool_calls"]["type"]).__name__ == "JSONB"


def test_indexes_serve_the_seed_columns(engine: Engine) -> None:
    """The seeds list user_id, updated_at, conversation_id, messages.user_id and created_at."""
    insp = inspect(engine)

    def leading(table: str) -> set[tuple[str, ...]]:
        idx = {tuple(i["column_names"]) for i in insp.get_indexes(table)}
        idx |= {tuple(u["column_names"]) for u in insp.get_unique_constraints(table)}
        return idx

    conv = leading("conversations")
    msgs = leading("messages")
    assert ("user_id", "updated_at", "id") in conv  # user_id + updated_at, ordered scan
    assert ("conversation_id", "position") in msgs  # conversation_id, in order
    assert ("user_id", "created_at") in msgs  # messages.user_id + created_at


def test_message_for_missing_conversation_is_rejected(engine: Engine) -> None:
    with Session(engine) as session:
        _user(session, "alice")
        session.add(
            Message(conversation_id=9999, user_id="alice", position=1, role="user", content="x")
        )
        with pytest.raises(IntegrityError):
            session.commit()


def test_raw_sql_foreign_key_violation_is_rejected(engine: Engine) -> None:
    """Seed 001, step 4, as raw SQL."""
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (user_id, conversation_id, position, role, content)"
                " VALUES ('fake-user-id', 9999, 1, 'user', 'test')"
            )
        )


def test_message_owner_must_match_conversation_owner(engine: Engine) -> None:
    with Session(engine) as session:
        _user(session, "alice")
        _user(session, "mallory")
        conv = _conversation(session, "alice")
        session.add(_message(conv, 1, "hi", user_id="mallory"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_role_is_checked_by_the_database(engine: Engine) -> None:
    with Session(engine) as session:
        _user(session, "alice")
        conv = _conversation(session, "alice")
        assert conv.id is not None
        bad = {"conversation_id": conv.id, "role": "robot", "content": "hi"}
        with pytest.raises(IntegrityError):
            session.execute(Message.__table__.insert().values(bad))  # type: ignore[attr-defined]


#: Each CHECK constraint of the schema, and raw writes (after one valid conversation with
#: one message at position 1) that it alone must refuse.
CHECK_VIOLATIONS = {
    "ck_messages_position": [
        "INSERT INTO messages (conversation_id, user_id, position, role, content)"
        " VALUES (1, 'alice', 0, 'user', 'x')",
        "INSERT INTO messages (conversation_id, user_id, position, role, content)"
        " VALUES (1, 'alice', -5, 'user', 'x')",
        "UPDATE messages SET position = 0",
    ],
    "ck_messages_role": [
        "INSERT INTO messages (conversation_id, user_id, position, role, content)"
        " VALUES (1, 'alice', 2, 'USER', 'x')",
        "UPDATE messages SET role = ''",
    ],
    "ck_conversations_message_count": ["UPDATE conversations SET message_count = -1"],
    "ck_messages_status": [
        "INSERT INTO messages (conversation_id, user_id, position, role, content, status)"
        " VALUES (1, 'alice', 2, 'user', 'x', 'done')",
        "UPDATE messages SET status = ''",
    ],
    "ck_message_chunks_seq": [
        "INSERT INTO message_chunks (message_id, user_id, seq, text) VALUES (1, 'alice', -1, 'x')",
    ],
}


def test_every_check_constraint_is_tested() -> None:
    names = {
        str(c.name)
        for table in (Conversation.__table__, Message.__table__, MessageChunk.__table__)  # type: ignore[attr-defined]
        for c in table.constraints
        if c.__class__.__name__ == "CheckConstraint"
    }
    assert names == set(CHECK_VIOLATIONS)


@pytest.mark.parametrize("statement", [sql for sqls in CHECK_VIOLATIONS.values() for sql in sqls])
def test_check_constraints_refuse_raw_writes(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO conversations (user_id) VALUES ('alice')"))
        conn.execute(
            text(
                "INSERT INTO messages (conversation_id, user_id, position, role, content)"
                " VALUES (1, 'alice', 1, 'user', 'ok')"
            )
        )
    with pytest.raises(IntegrityError) as err, engine.begin() as conn:
        conn.execute(text(statement))
    name = next(n for n, sqls in CHECK_VIOLATIONS.items() if statement in sqls)
    assert name in str(err.value)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT position, role FROM messages")).all() == [(1, "user")]


def test_role_is_checked_by_the_orm_before_anything_is_written(engine: Engine) -> None:
    with Session(engine) as session:
        _user(session, "alice")
        conv = _conversation(session, "alice")
        session.add(_message(conv, 1, "hi", role="robot"))
        with pytest.raises(ValidationError) as caught:
            session.commit()
        assert caught.value.field == "role"
    assert _count(engine, Message) == 0


def test_position_is_unique_per_conversation(engine: Engine) -> None:
    with Session(engine) as session:
        _user(session, "alice")
        conv = _conversation(session, "alice")
        other = _conversation(session, "alice")
        session.add_all([_message(conv, 1, "a"), _message(other, 1, "same position, other conv")])
        session.commit()
        session.add(_message(conv, 1, "b"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_a_conversation_registers_a_new_user_by_itself(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Conversation(user_id="nobody"))
        session.commit()
    with engine.connect() as conn:
        users = conn.execute(text("SELECT id FROM convostore_users")).scalars().all()
    assert users == ["nobody"]


def _count(engine: Engine, model: type[Message] | type[Conversation], **where: object) -> int:
    with Session(engine) as session:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return int(session.execute(stmt).scalar_one())


def test_deleting_conversation_deletes_its_messages(engine: Engine) -> None:
    """Seed 003, test 5: CASCADE DELETE through the ORM session."""
    with Session(engine) as session:
        _user(session, "test_user_123")
        conv = _conversation(session, "test_user_123")
        keep = _conversation(session, "test_user_123")
        session.add_all(
            [_message(conv, 1, "Hello"), _message(conv, 2, "Of course!", role="assistant")]
        )
        session.add(_message(keep, 1, "stays"))
        session.commit()
        conv_id, keep_id = conv.id, keep.id
        session.delete(conv)
        session.commit()
    assert _count(engine, Message, conversation_id=conv_id) == 0
    assert _count(engine, Message, conversation_id=keep_id) == 1


def test_deleting_user_deletes_everything_of_theirs(engine: Engine) -> None:
    """Seed 000's cascade script: delete the user, conversations and messages go."""
    with Session(engine) as session:
        user = _user(session, "test@cascade.com")
        _user(session, "bystander")
        conv = _conversation(session, "test@cascade.com")
        other = _conversation(session, "bystander")
        session.add_all([_message(conv, 1, "Hello"), _message(other, 1, "mine")])
        session.commit()
        session.delete(user)
        session.commit()
    assert _count(engine, Conversation, user_id="test@cascade.com") == 0
    assert _count(engine, Message, user_id="test@cascade.com") == 0
    assert _count(engine, Message, user_id="bystander") == 1


def test_timestamps_default_to_now_in_utc(engine: Engine) -> None:
    before = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO convostore_users (id) VALUES ('alice')"))
        conn.execute(text("INSERT INTO conversations (user_id) VALUES ('alice')"))
    with Session(engine) as session:
        conv = session.exec(select(Conversation)).one()[0]
    assert conv.created_at is not None and conv.created_at.tzinfo is not None
    assert conv.created_at.utcoffset() == UTC.utcoffset(None)
    # SQLite's CURRENT_TIMESTAMP has whole seconds.
    assert abs((conv.created_at - before).total_seconds()) < 60


# ------------------------------------------------------------ the seeds' scenarios


def test_seed_scenario_create_and_retrieve_in_order(store: Store) -> None:
    conv = store.create_conversation("test-user-123", title="Test Conversation")
    store.append_message(
        "test-user-123", conv.id, {"role": "user", "content": "Hello, AI assistant!"}
    )
    store.append_message(
        "test-user-123",
        conv.id,
        {"role": "assistant", "content": "Hello! How can I help you today?"},
    )
    got = store.get_conversation("test-user-123", conv.id)
    assert got.title == "Test Conversation"
    assert got.message_count == 2
    msgs = store.get_messages("test-user-123", conv.id)
    assert [(m.position, m.role, m.content) for m in msgs] == [
        (1, "user", "Hello, AI assistant!"),
        (2, "assistant", "Hello! How can I help you today?"),
    ]


def test_seed_scenario_two_users_are_isolated(store: Store) -> None:
    a = store.create_conversation("user-a", messages=[{"role": "user", "content": "A's secret"}])
    b = store.create_conversation("user-b", messages=[{"role": "user", "content": "B's secret"}])
    assert [c.id for c in store.list_conversations("user-a").data] == [a.id]
    assert [c.id for c in store.list_conversations("user-b").data] == [b.id]
    assert [m.content for m in store.get_messages("user-a", a.id)] == ["A's secret"]
    from convostore import NotFoundError

    with pytest.raises(NotFoundError) as missing:
        store.get_messages("user-a", 10**9)
    with pytest.raises(NotFoundError) as foreign:
        store.get_messages("user-a", b.id)
    # Another user's conversation is indistinguishable from a missing one.
    assert type(missing.value) is type(foreign.value)
    assert str(foreign.value) == f"conversation {b.id} not found"


def test_seed_scenario_thousand_messages_in_order(store: Store) -> None:
    conv = store.create_conversation("perf-user")
    batch = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"Message {i}"}
        for i in range(1000)
    ]
    store.append_messages("perf-user", conv.id, batch)
    msgs = store.get_messages("perf-user", conv.id)
    assert len(msgs) == 1000
    assert [m.content for m in msgs] == [f"Message {i}" for i in range(1000)]
    assert [m.position for m in msgs] == list(range(1, 1001))
    assert store.get_conversation("perf-user", conv.id).message_count == 1000


def test_absent_json_is_sql_null(store: Store) -> None:
    """``None`` in a JSON column is SQL NULL, not the JSON text 'null' (IS NULL finds it)."""
    conv = store.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
    with store.engine.connect() as conn:
        nulls = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM conversations WHERE metadata IS NULL),"
                " (SELECT count(*) FROM messages WHERE tool_calls IS NULL AND metadata IS NULL)"
            )
        ).one()
    assert tuple(nulls) == (1, 1)
    assert store.get_conversation("alice", conv.id).metadata is None


def test_ids_are_never_reused_after_a_pop(store: Store) -> None:
    conv = store.create_conversation("alice", messages=[{"role": "user", "content": "a"}])
    last = store.append_message("alice", conv.id, {"role": "user", "content": "b"})
    store.pop_message("alice", conv.id)
    again = store.append_message("alice", conv.id, {"role": "user", "content": "c"})
    assert again.position == last.position
    assert again.id > last.id
