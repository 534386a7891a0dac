"""convostore: the conversation database behind a stateless AI chat endpoint.

Usage::

    from convostore import Store

    with Store() as store:  # DATABASE_URL, or ./convostore.db
        store.migrate()
        conv = store.create_conversation("alice")
        store.append_message("alice", conv.id, {"role": "user", "content": "Hello"})
        print(store.get_history("alice", conv.id, max_messages=20))
"""

from convostore import _orm
from convostore.errors import (
    ConfigurationError,
    ConflictError,
    ConvostoreError,
    MissingExtraError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from convostore.history import TokenCounter, approximate_tokens
from convostore.models import Conversation, Message, MessageChunk, MessageRole, MessageStatus
from convostore.schemas import (
    ConversationPublic,
    MessageCreate,
    MessagePublic,
    Page,
    PurgeReport,
    RetentionPolicy,
    SearchHit,
    StreamChunk,
    StreamRead,
)
from convostore.store import AsyncStore, Store
from convostore.streaming import follow_stream

# The models' ORM events (validation, SQLite's fill-in) need the models and the schemas,
# which import each other's modules: installed here, once both are complete. Importing
# ``convostore.models`` always runs this package module first.
_orm.install()

__version__ = "0.1.0"

__all__ = [
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
]
