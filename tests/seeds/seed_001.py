"""Seed 001 (002-chat-database-schema): host ``users`` table with varchar ids, async
sessions, the host's own Alembic beside ``convostore db upgrade``, raw SQL checks.

The host's ``User`` is defined *after* convostore's models are imported.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import String, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from convostore.migrate import exclude_convostore
from convostore.models import Conversation, Message
from tests.seeds._host import host_async_engine, host_engine, now_sql


class User(SQLModel, table=True):
    """001-user-auth's user table."""

    __tablename__ = "users"

    id: str = Field(primary_key=True, sa_type=String(255))  # type: ignore[call-overload]
    email: str


engine = host_engine()
# The host's own migrations made its users table (001-user-auth) ...
User.__table__.create(engine)  # type: ignore[attr-defined]
with engine.begin() as conn:
    conn.execute(
        text("INSERT INTO users (id, email) VALUES ('test-user-id', 't@x'), ('user-uuid', 'u@x')")
    )
# ... and convostore's migrations add the chat tables (the command line, as a user runs it).
convostore = Path(sys.executable).with_name("convostore")
subprocess.run([str(convostore), "db", "upgrade"], check=True, env=os.environ)
# The drift check and the verify report follow the same setting.
for command in ("check", "verify"):
    subprocess.run([str(convostore), "db", command], check=True, env=os.environ)
print("db check and db verify passed")

# The host's `alembic revision --autogenerate`, with convostore's one-liner in env.py:
# it proposes nothing for convostore's tables (neither to create nor to drop them).
with engine.connect() as conn:
    ctx = MigrationContext.configure(conn, opts={"include_object": exclude_convostore})
    diff = compare_metadata(ctx, SQLModel.metadata)
assert diff == [], diff
print("host autogenerate: no changes")

# 1. Check Tables Exist / 2. Verify Schema
insp = inspect(engine)
assert {"conversations", "messages"} <= set(insp.get_table_names())
conv_cols = {c["name"] for c in insp.get_columns("conversations")}
assert {"id", "user_id", "created_at", "updated_at"} <= conv_cols
msg_cols = {c["name"]: c for c in insp.get_columns("messages")}
assert {"id", "user_id", "conversation_id", "role", "content", "tool_calls", "created_at"} <= set(
    msg_cols
)
assert isinstance(msg_cols["user_id"]["type"], String) and msg_cols["user_id"]["type"].length == 255
fks = {fk["referred_table"] for fk in insp.get_foreign_keys("conversations")}
assert fks == {"users"}, fks
print("schema verified")

NOW = now_sql()

# 4. Test Foreign Keys
try:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (user_id, conversation_id, role, content, created_at)"
                f" VALUES ('fake-user-id', 9999, 'user', 'test', {NOW})"
            )
        )
    raise AssertionError("a message for a missing conversation was accepted")
except IntegrityError as exc:
    assert "foreign key" in str(exc.orig).lower(), exc
    print("Should get error: foreign key constraint violation -> got it")

# 5. Test Cascade Delete
with engine.begin() as conn:
    conversation_id = conn.execute(
        text(
            f"INSERT INTO conversations (user_id, created_at, updated_at) VALUES ('test-user-id', {NOW}, {NOW})"
            " RETURNING id"
        )
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO messages (user_id, conversation_id, role, content, created_at)"
            f" VALUES ('test-user-id', :cid, 'user', 'test message', {NOW})"
        ),
        {"cid": conversation_id},
    )
    assert (
        conn.execute(
            text("SELECT position FROM messages WHERE conversation_id = :cid"),
            {"cid": conversation_id},
        ).scalar_one()
        == 1
    )
    conn.execute(text("DELETE FROM conversations WHERE id = :cid"), {"cid": conversation_id})
    rows = conn.execute(
        text("SELECT * FROM messages WHERE conversation_id = :cid"), {"cid": conversation_id}
    ).all()
    assert rows == [], rows
print("Should return 0 rows -> 0 rows")


# Quick Reference (Python), with the app's async session
async def quick_reference() -> None:
    async_engine = host_async_engine()
    user_id = "user-uuid"
    async with AsyncSession(async_engine) as session:
        conversation = Conversation(
            user_id="user-uuid",
            created_at=datetime.utcnow(),
            updated_at=datetime.utcnow(),
        )
        session.add(conversation)
        await session.commit()
        await session.refresh(conversation)  # an async session cannot lazy-load the id
        conv_id = conversation.id

        for content in ("Hello AI", "Hello again"):
            message = Message(
                user_id="user-uuid",
                conversation_id=conv_id,
                role="user",
                content=content,
                created_at=datetime.utcnow(),
            )
            session.add(message)
            await session.commit()

        # Get user's conversations
        result = await session.execute(
            select(Conversation)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.updated_at.desc())
        )
        conversations = result.scalars().all()
        assert [c.id for c in conversations] == [conv_id]

        # Get conversation messages
        result = await session.execute(
            select(Message)
            .where(Message.conversation_id == conv_id, Message.user_id == user_id)
            .order_by(Message.created_at.asc())
        )
        messages = result.scalars().all()
        assert [m.content for m in messages] == ["Hello AI", "Hello again"]
        assert [m.position for m in messages] == [1, 2]
        # Naive datetime.utcnow() was taken as UTC and comes back aware.
        assert all(m.created_at is not None and m.created_at.tzinfo is not None for m in messages)
    await async_engine.dispose()
    print(f"async session: {len(messages)} messages in order")


asyncio.run(quick_reference())
