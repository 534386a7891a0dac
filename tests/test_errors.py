"""The exception tree and the store's translation of driver errors."""

from __future__ import annotations

import pytest

import convostore
from convostore import (
    AsyncStore,
    ConfigurationError,
    ConflictError,
    ConvostoreError,
    MissingExtraError,
    NotFoundError,
    Store,
    UnavailableError,
    ValidationError,
)

UNREACHABLE = "postgresql://root@127.0.0.1:1/nothing?connect_timeout=2"


def test_public_api_is_exactly_this() -> None:
    assert set(convostore.__all__) == {
        "AsyncStore",
        "ConfigurationError",
        "ConflictError",
        "Conversation",
        "ConversationPublic",
        "ConvostoreError",
        "Message",
        "MessageChunk",
        "MessageCreate",
        "MessagePublic",
        "MessageRole",
        "MessageStatus",
        "MissingExtraError",
        "NotFoundError",
        "Page",
        "PurgeReport",
        "RetentionPolicy",
        "SearchHit",
        "Store",
        "StreamChunk",
        "StreamRead",
        "TokenCounter",
        "UnavailableError",
        "ValidationError",
        "__version__",
        "approximate_tokens",
        "follow_stream",
    }
    for name in convostore.__all__:
        assert hasattr(convostore, name), name


def test_every_error_has_one_root_and_a_stable_code() -> None:
    errors: list[ConvostoreError] = [
        NotFoundError("conversation", 1),
        ValidationError("content", "must not be empty"),
        ConflictError("the change conflicts with stored data", constraint="uq_x"),
        UnavailableError("down"),
        ConfigurationError("DATABASE_URL: bad"),
        MissingExtraError("server", "The REST service", "fastapi"),
    ]
    codes = [e.to_dict()["code"] for e in errors]
    assert codes == [
        "not_found",
        "validation_error",
        "conflict",
        "unavailable",
        "configuration_error",
        "missing_extra",
    ]
    assert ValidationError("content", "x").to_dict()["field"] == "content"
    assert str(ValidationError("content", "must not be empty")) == "content: must not be empty"


def test_unreachable_database_is_unavailable_not_a_crash() -> None:
    with Store(UNREACHABLE) as store, pytest.raises(UnavailableError):
        store.list_conversations("alice")
    with Store(UNREACHABLE) as store, pytest.raises(UnavailableError):
        store.append_message("alice", 1, {"role": "user", "content": "hi"})


async def test_unreachable_database_is_unavailable_async() -> None:
    async with AsyncStore(UNREACHABLE) as store:
        with pytest.raises(UnavailableError):
            await store.get_messages("alice", 1)


def test_conflict_message_does_not_leak_the_schema(store: Store) -> None:
    """A unique violation the store cannot retry away reads generically; logs get the name."""
    conv = store.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
    with store.engine.begin() as conn:
        # Break the counter behind the store's back: the next append collides.
        conn.exec_driver_sql(f"UPDATE conversations SET message_count = 0 WHERE id = {conv.id}")
    with pytest.raises(ConflictError) as info:
        store.append_message("alice", conv.id, {"role": "user", "content": "again"})
    assert str(info.value) == "the change conflicts with stored data"
    # PostgreSQL names the constraint; SQLite names its columns.
    assert info.value.constraint in {
        "uq_messages_conversation_position",
        "UNIQUE constraint failed: messages.conversation_id, messages.position",
    }


async def test_an_unmigrated_database_says_to_migrate(empty_url: str) -> None:
    """Not a raw driver error: a ConfigurationError that names the fix, on both APIs."""
    with Store(empty_url) as store:
        with pytest.raises(ConfigurationError, match="convostore db upgrade") as info:
            store.create_conversation("alice")
        assert "convostore_retention_policies" in str(info.value)  # the driver's own words
        with pytest.raises(ConfigurationError, match="never migrated"):
            store.list_conversations("alice")
    async with AsyncStore(empty_url) as astore:
        with pytest.raises(ConfigurationError, match="convostore db upgrade"):
            await astore.get_messages("alice", 1)
