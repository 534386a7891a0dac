"""Seed 002 (003-chat-database-schema): host ``user`` table (singular), ``get_session()``,
``database/migrations.py`` as ``create_all``, messages added without a ``user_id``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from sqlmodel import Field, Session, SQLModel, select

from tests.seeds._host import host_engine


class User(SQLModel, table=True):
    """task_models.User: the app's ``user`` table."""

    __tablename__ = "user"

    id: str = Field(primary_key=True)
    email: str | None = None


# Step 2/3: models/conversation.py, models/message.py (import paths aside)
from convostore.models import Conversation, Message, MessageRole  # noqa: E402

engine = host_engine()


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


# Step 4: python database/migrations.py
SQLModel.metadata.create_all(engine)
print("Database tables created successfully!")

# The users these scripts act for exist already (001-user-auth signed them up).
with next(get_session()) as session:
    for uid in ("test-user-123", "user-1", "user-2", "perf-test-user"):
        session.add(User(id=uid))
    session.commit()


# Step 7: Test Data Insertion
def test_conversation_creation():
    """Test creating a conversation"""
    with next(get_session()) as session:
        # Create conversation
        conversation = Conversation(user_id="test-user-123", title="Test Conversation")
        session.add(conversation)
        session.commit()
        session.refresh(conversation)

        print(f"✓ Created conversation: {conversation.id}")
        return conversation.id


def test_message_creation(conversation_id):
    """Test creating messages"""
    with next(get_session()) as session:
        # Create user message
        user_msg = Message(
            conversation_id=conversation_id, role=MessageRole.USER, content="Hello, AI assistant!"
        )
        session.add(user_msg)

        # Create assistant message
        assistant_msg = Message(
            conversation_id=conversation_id,
            role=MessageRole.ASSISTANT,
            content="Hello! How can I help you today?",
        )
        session.add(assistant_msg)

        session.commit()
        print(f"✓ Created 2 messages in conversation {conversation_id}")


def test_conversation_retrieval(conversation_id):
    """Test retrieving conversation with messages"""
    with next(get_session()) as session:
        from sqlmodel import select

        # Get conversation
        conversation = session.get(Conversation, conversation_id)
        print(f"✓ Retrieved conversation: {conversation.title}")

        # Get messages
        messages = session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.created_at)
        ).all()

        print(f"✓ Retrieved {len(messages)} messages")
        for msg in messages:
            print(f"  - {msg.role}: {msg.content[:50]}...")
        # Added: the same order as the positions, the owner taken from the conversation.
        assert [(m.position, m.role, m.user_id) for m in messages] == [
            (1, "user", "test-user-123"),
            (2, "assistant", "test-user-123"),
        ]


# Step 8: test_constraints.py
def test_invalid_conversation_id():
    """Test that invalid conversation_id is rejected"""
    with next(get_session()) as session:
        try:
            # Try to create message with non-existent conversation
            msg = Message(conversation_id=99999, role=MessageRole.USER, content="This should fail")
            session.add(msg)
            session.commit()
            print("✗ Foreign key constraint NOT working!")
            raise SystemExit(1)
        except Exception as e:
            print(f"✓ Foreign key constraint working: {type(e).__name__}")
            assert type(e).__name__ == "IntegrityError"


# Step 9: test_user_isolation.py
def test_user_isolation():
    """Test that users can only see their own conversations"""
    with next(get_session()) as session:
        # Create conversations for two users
        conv1 = Conversation(user_id="user-1", title="User 1 Conversation")
        conv2 = Conversation(user_id="user-2", title="User 2 Conversation")
        session.add(conv1)
        session.add(conv2)
        session.commit()

        # Query as user-1
        user1_convs = session.exec(
            select(Conversation).where(Conversation.user_id == "user-1")
        ).all()

        print(f"✓ User 1 sees {len(user1_convs)} conversation(s)")
        assert len(user1_convs) == 1
        assert user1_convs[0].title == "User 1 Conversation"

        # Query as user-2
        user2_convs = session.exec(
            select(Conversation).where(Conversation.user_id == "user-2")
        ).all()

        print(f"✓ User 2 sees {len(user2_convs)} conversation(s)")
        assert len(user2_convs) == 1
        assert user2_convs[0].title == "User 2 Conversation"

        print("✓ User isolation verified!")


# Step 10: test_performance.py (the timing is printed, not asserted: see benchmarks/)
def test_large_conversation():
    """Test conversation with 1000+ messages"""
    with next(get_session()) as session:
        # Create conversation
        conv = Conversation(user_id="perf-test-user", title="Performance Test")
        session.add(conv)
        session.commit()
        session.refresh(conv)

        # Add 1000 messages
        start = time.time()
        for i in range(1000):
            msg = Message(
                conversation_id=conv.id,
                role=MessageRole.USER if i % 2 == 0 else MessageRole.ASSISTANT,
                content=f"Message {i}: " + ("x" * 100),
            )
            session.add(msg)
        session.commit()
        insert_time = time.time() - start

        print(f"✓ Inserted 1000 messages in {insert_time:.2f}s")

        # Retrieve messages
        start = time.time()
        messages = session.exec(
            select(Message).where(Message.conversation_id == conv.id).order_by(Message.created_at)
        ).all()
        retrieve_time = time.time() - start

        print(f"✓ Retrieved {len(messages)} messages in {retrieve_time:.2f}s")
        # Added: one commit of 1000 messages still orders by created_at exactly as by position.
        assert [m.position for m in messages] == list(range(1, 1001))
        assert [m.content for m in messages] == [f"Message {i}: " + "x" * 100 for i in range(1000)]


if __name__ == "__main__":
    print("Testing Chat Database Schema...")
    print("-" * 50)
    conv_id = test_conversation_creation()
    test_message_creation(conv_id)
    test_conversation_retrieval(conv_id)
    test_invalid_conversation_id()
    test_user_isolation()
    test_large_conversation()
    print("All seed 002 checks passed")
