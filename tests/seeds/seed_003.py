"""Seed 003 (006-conversation-message-models): no users table of its own (standalone),
the host's Alembic beside convostore's migrations, the REPL walkthrough and its perf check.
"""

from __future__ import annotations

import time

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Field, Session, SQLModel, select

from convostore.migrate import exclude_convostore, upgrade
from tests.seeds._host import host_engine


class Task(SQLModel, table=True):
    """Phase II's own table."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    title: str


from convostore.models import Conversation, Message  # noqa: E402

engine = host_engine()
Task.__table__.create(engine)  # type: ignore[attr-defined]  (the host's own migration)
upgrade(engine)  # convostore's shipped migrations (`convostore db upgrade`)
with engine.connect() as conn:
    ctx = MigrationContext.configure(conn, opts={"include_object": exclude_convostore})
    assert compare_metadata(ctx, SQLModel.metadata) == []
print("host autogenerate: no changes")

# Create database session
session = Session(engine)

# Test 1: Create a conversation
print("\n=== Test 1: Create Conversation ===")
conversation = Conversation(user_id="test_user_123")
session.add(conversation)
session.commit()
session.refresh(conversation)
print(f"✅ Created conversation ID: {conversation.id}")
print(f"   User: {conversation.user_id}")
print(f"   Created: {conversation.created_at}")

# Test 2: Add messages to conversation
print("\n=== Test 2: Add Messages ===")
message1 = Message(
    conversation_id=conversation.id,
    user_id="test_user_123",
    role="user",
    content="Hello, can you help me?",
)
message2 = Message(
    conversation_id=conversation.id,
    user_id="test_user_123",
    role="assistant",
    content="Of course! How can I assist you today?",
)
session.add(message1)
session.add(message2)
session.commit()
session.refresh(message1)
session.refresh(message2)
print(f"✅ Created message 1 ID: {message1.id}")
print(f"✅ Created message 2 ID: {message2.id}")

# Test 3: Query conversation history
print("\n=== Test 3: Query Conversation History ===")
stmt = (
    select(Message)
    .where(Message.conversation_id == conversation.id, Message.user_id == "test_user_123")
    .order_by(Message.created_at)
)
messages = session.exec(stmt).all()
print(f"✅ Found {len(messages)} messages in conversation {conversation.id}")
for msg in messages:
    print(f"   [{msg.role}]: {msg.content}")
assert [m.content for m in messages] == [
    "Hello, can you help me?",
    "Of course! How can I assist you today?",
]

# Test 4: User-scoped query
print("\n=== Test 4: User-Scoped Conversations ===")
stmt = (
    select(Conversation)
    .where(Conversation.user_id == "test_user_123")
    .order_by(Conversation.updated_at.desc())
)
user_conversations = session.exec(stmt).all()
print(f"✅ User has {len(user_conversations)} conversation(s)")
assert len(user_conversations) == 1 and user_conversations[0].message_count == 2

# Test 5: CASCADE DELETE (cleanup)
print("\n=== Test 5: Test CASCADE DELETE ===")
print(f"Before delete: {len(messages)} messages exist")
session.delete(conversation)
session.commit()
# Verify messages were cascade-deleted
stmt = select(Message).where(Message.conversation_id == conversation.id)
remaining_messages = session.exec(stmt).all()
print(f"After delete: {len(remaining_messages)} messages remain")
assert remaining_messages == []
print("✅ CASCADE DELETE works correctly")

session.close()

# Performance Validation (printed; speed is measured by benchmarks/, not asserted)
session = Session(engine)

# Create test conversation with 100 messages
conversation = Conversation(user_id="perf_test")
session.add(conversation)
session.commit()
session.refresh(conversation)

for i in range(100):
    msg = Message(
        conversation_id=conversation.id,
        user_id="perf_test",
        role="user" if i % 2 == 0 else "assistant",
        content=f"Test message {i}",
    )
    session.add(msg)
session.commit()

# Measure query time
start = time.time()
stmt = (
    select(Message)
    .where(Message.conversation_id == conversation.id, Message.user_id == "perf_test")
    .order_by(Message.created_at)
)
messages = session.exec(stmt).all()
elapsed = (time.time() - start) * 1000  # Convert to ms

print(f"Queried {len(messages)} messages in {elapsed:.2f}ms")
assert [m.content for m in messages] == [f"Test message {i}" for i in range(100)]

# Cleanup
session.delete(conversation)
session.commit()
session.close()
print("\n✅ All tests passed!")
