"""Seed 000 (phase-2 backend): host ``users`` table with uuid string ids, ``create_all``.

The host's ``User`` is defined *before* convostore's models are imported.
"""

from __future__ import annotations

from uuid import uuid4

from sqlalchemy import inspect, text
from sqlmodel import Field, Session, SQLModel

from tests.seeds._host import host_engine


class User(SQLModel, table=True):
    """The phase-2 app's own user (around line 168 of its models.py)."""

    __tablename__ = "users"

    id: str = Field(default_factory=lambda: str(uuid4()), primary_key=True, max_length=36)
    email: str
    password_hash: str


from convostore.models import Conversation, Message  # noqa: E402  (Step 1: add the models)

engine = host_engine()

# Step 3: init_db.py
SQLModel.metadata.create_all(engine)

# Step 4: Verify Tables Created
inspector = inspect(engine)
tables = inspector.get_table_names()
print("Tables:", tables)
assert "conversations" in tables, "conversations table missing"
assert "messages" in tables, "messages table missing"
print("✅ All tables created successfully")

# Test Cascade Delete
with Session(engine) as session:
    # Create test user
    user = User(email="test@cascade.com", password_hash="test")
    session.add(user)
    session.commit()

    # Create conversation
    conv = Conversation(user_id=user.id)
    session.add(conv)
    session.commit()

    # Create message
    msg = Message(conversation_id=conv.id, role="user", content="Hello")
    session.add(msg)
    session.commit()

    # Delete user - should cascade delete conversation and message
    session.delete(user)
    session.commit()

    print("✅ Cascade delete working correctly")

# What the checklist's "test cascade delete" means: nothing of the user is left.
with engine.connect() as conn:
    left = conn.execute(
        text("SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM messages)")
    )
    assert left.scalar_one() == 0, "cascade left rows behind"
print("cascade verified: 0 rows left")
