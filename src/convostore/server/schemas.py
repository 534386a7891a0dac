"""Request and response bodies of the REST API (the shapes shown at ``/docs``).

Conversations are OpenAI's Conversation object (``{"id": "conv_12", "object":
"conversation", "created_at": <unix seconds>, "metadata": {...}}``) with convostore's own
fields beside it (:class:`ConversationOut`; the library's ``ConversationPublic`` keeps its
integer id). Messages are :class:`convostore.schemas.MessageCreate` in and
:class:`MessageOut` out (the library's ``MessagePublic``, its ``conversation_id`` the
``conv_`` string); our lists are ``{"data": [...], "has_more": bool, "next_cursor": str |
null}``, the Conversations API's item lists OpenAI's ``{"object": "list", "data",
"first_id", "last_id", "has_more"}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from convostore._ops import MAX_BATCH
from convostore.errors import ValidationError
from convostore.models import MAX_ID_LENGTH, MAX_TITLE_LENGTH
from convostore.schemas import (
    MAX_HISTORY_MESSAGES,
    MAX_HISTORY_TOKENS,
    MAX_SYSTEM_PROMPT_LENGTH,
    MessageCreate,
    MessagePublic,
    Page,
    RetentionPolicy,
    SearchHit,
    StreamRead,
)

__all__ = [
    "MAX_ITEMS_PER_REQUEST",
    "ChatMessageOut",
    "ConversationCreate",
    "ConversationDeleted",
    "ConversationItemList",
    "ConversationList",
    "ConversationOut",
    "ConversationUpdate",
    "ItemsCreate",
    "MessageOut",
    "Metadata",
    "PublicConversationId",
    "History",
    "HistoryBody",
    "HistoryRequest",
    "MessageBatch",
    "MessageList",
    "MessagesDeleted",
    "RetentionPolicyUpdate",
    "Status",
    "UserDeleted",
]


# ------------------------------------------------------------- ids, times, metadata

#: The largest integer id (a BIGINT).
MAX_ID = 2**63 - 1
_CONVERSATION_ID = re.compile(r"^(?:conv_)?([1-9][0-9]{0,18})$")


def parse_conversation_id(value: str, field: str = "conversation_id") -> int:
    """The row id of ``conv_12`` (or of the bare ``12``); else a ``ValidationError``."""
    match = _CONVERSATION_ID.match(value)
    if match is None or int(match.group(1)) > MAX_ID:
        shown = value[:80]
        raise ValidationError(field, f"not a conversation id: {shown!r} (expected e.g. 'conv_12')")
    return int(match.group(1))


def public_conversation_id(value: Any) -> Any:
    """A stored conversation id as the API shows it: ``12`` -> ``"conv_12"``."""
    return f"conv_{value}" if isinstance(value, int) and not isinstance(value, bool) else value


def unix_seconds(value: Any) -> Any:
    """A stored time as the API shows a conversation's: Unix seconds, as OpenAI does."""
    return int(value.timestamp()) if isinstance(value, datetime) else value


#: A conversation id in a response: ``"conv_12"``.
PublicConversationId = Annotated[
    str, BeforeValidator(public_conversation_id), Field(examples=["conv_12"])
]
UnixTime = Annotated[int, BeforeValidator(unix_seconds)]

#: OpenAI's metadata limits, for the REST API's conversations (the library keeps any JSON).
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_LENGTH = 64
MAX_METADATA_VALUE_LENGTH = 512
#: Items per Conversations API request (create, items create), as OpenAI.
MAX_ITEMS_PER_REQUEST = 20


def _openai_metadata(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"at most {MAX_METADATA_PAIRS} key-value pairs (got {len(value)})")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise ValueError(
                f"keys are at most {MAX_METADATA_KEY_LENGTH} characters ({key[:20]!r}...)"
            )
        if not isinstance(item, str):
            raise ValueError(f"values are strings ({key!r} is not)")
        if len(item) > MAX_METADATA_VALUE_LENGTH:
            raise ValueError(f"values are at most {MAX_METADATA_VALUE_LENGTH} characters ({key!r})")
    return value


#: Conversation metadata over REST: OpenAI's rules, written once here (16 pairs, string
#: keys of at most 64 characters, string values of at most 512).
Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_openai_metadata),
    Field(
        description=f"Up to {MAX_METADATA_PAIRS} key-value pairs: keys at most "
        f"{MAX_METADATA_KEY_LENGTH} characters, string values at most "
        f"{MAX_METADATA_VALUE_LENGTH}.",
        examples=[{"model": "gpt-4o"}],
    ),
]

Item = dict[str, Any]


_RETENTION_HELP = (
    'How long it lives after its last activity: "30d", "12h", "90m", "2w", or "none" '
    "(never expires)."
)


class ConversationCreate(BaseModel):
    """A new conversation; its ``items`` (OpenAI's) or ``messages`` (ours) are appended
    atomically with it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Trip planning",
                    "metadata": {"model": "gpt-4o"},
                    "messages": [{"role": "system", "content": "Be brief."}],
                }
            ]
        },
    )

    items: list[Item] | None = Field(
        default=None,
        max_length=MAX_ITEMS_PER_REQUEST,
        description="OpenAI's initial items (Responses API input items), up to "
        f"{MAX_ITEMS_PER_REQUEST}; or give `messages`, not both.",
    )
    title: str | None = Field(default=None, max_length=MAX_TITLE_LENGTH)
    metadata: Metadata | None = None
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Your own id for this conversation, unique per user (409 if taken).",
    )
    messages: list[MessageCreate] = Field(default_factory=list, max_length=MAX_BATCH)
    temporary: bool = Field(
        default=False,
        strict=True,
        description="A temporary chat: it lives by the (shorter) temporary policy, "
        "`CONVOSTORE_TEMPORARY_RETENTION` (default 24h) unless `retention` is given.",
    )
    retention: str | None = Field(
        default=None,
        max_length=32,
        description=_RETENTION_HELP + " Left out: your policy, else the server's default.",
        examples=["30d"],
    )


class ConversationUpdate(BaseModel):
    """Fields to change; a field left out is unchanged, ``null`` clears it (``hold`` and
    ``retention`` cannot be null: ``false``, ``"none"``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"title": "Renamed"}, {"hold": True}]},
    )

    title: str | None = Field(default=None, max_length=MAX_TITLE_LENGTH)
    metadata: Metadata | None = None
    hold: bool | None = Field(
        default=None,
        strict=True,
        description="Keep the conversation past its expiry (pin, legal hold).",
    )
    retention: str | None = Field(
        default=None,
        max_length=32,
        description=_RETENTION_HELP + " Counted from the last activity.",
        examples=["7d", "none"],
    )


class RetentionPolicyUpdate(RetentionPolicy):
    """Your defaults for new conversations; a field left out is unchanged, ``null`` goes
    back to the server's default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"retention": "30d", "temporary_retention": "1h"}]},
    )

    retention: str | None = Field(default=None, max_length=32, description=_RETENTION_HELP)
    temporary_retention: str | None = Field(
        default=None, max_length=32, description="The same, for temporary conversations."
    )


class MessageBatch(BaseModel):
    """Several messages appended in order, all or nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {"role": "user", "content": "What is 6 x 7?"},
                        {"role": "assistant", "content": "42."},
                    ]
                }
            ]
        },
    )

    messages: list[MessageCreate] = Field(max_length=MAX_BATCH)


class ConversationOut(BaseModel):
    """A conversation: OpenAI's Conversation object, then convostore's own fields."""

    model_config = ConfigDict(from_attributes=True)

    id: PublicConversationId
    object: Literal["conversation"] = "conversation"
    created_at: UnixTime = Field(description="Unix seconds.")
    metadata: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)]
    title: str | None
    user_id: str
    external_id: str | None = None
    message_count: int
    updated_at: UnixTime = Field(description="Unix seconds of the last activity.")
    expires_at: UnixTime | None = Field(
        default=None, description="Unix seconds; past it the conversation is gone unless held."
    )
    temporary: bool = False
    hold: bool = False
    retention: str | None = None


class MessageOut(MessagePublic):
    """A stored message (its ``conversation_id`` the conversation's ``conv_`` id)."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: PublicConversationId  # type: ignore[assignment]


class SearchHitOut(SearchHit):
    model_config = ConfigDict(from_attributes=True)

    conversation_id: PublicConversationId  # type: ignore[assignment]
    message: MessageOut | None


class StreamReadOut(StreamRead):
    model_config = ConfigDict(from_attributes=True)

    message: MessageOut


class ConversationList(Page[ConversationOut]):
    """A page of conversations, most recently active first; pass ``next_cursor`` as ``after``."""


class ItemsCreate(BaseModel):
    """Items to append in order, all or nothing (OpenAI's ``items.create``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"items": [{"type": "message", "role": "user", "content": "Hello!"}]}]
        },
    )

    items: list[Item] = Field(max_length=MAX_ITEMS_PER_REQUEST)


class ConversationItemList(BaseModel):
    """A page of items (OpenAI's ``conversation.item_list``); pass ``last_id`` as ``after``."""

    object: Literal["list"] = "list"
    data: list[Item]
    first_id: str | None
    last_id: str | None
    has_more: bool


class MessageList(Page[MessageOut]):
    """A page of messages by position; ``next_cursor`` is the position to pass as
    ``after`` (order=asc) or ``before`` (order=desc)."""


class SearchResults(Page[SearchHitOut]):
    """Search hits, best first; pass ``next_cursor`` as ``after`` for the next page."""


class MessagesDeleted(BaseModel):
    """The messages a pop or truncate removed, oldest first (empty if there were none)."""

    data: list[MessageOut]


class ConversationDeleted(BaseModel):
    """OpenAI's ``conversation.deleted``."""

    id: PublicConversationId
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class UserDeleted(BaseModel):
    """Erasure result: ``deleted`` is false if nothing was stored for this user."""

    id: str
    object: Literal["user.deleted"] = "user.deleted"
    deleted: bool


class ChatMessageOut(BaseModel):
    """One message in the OpenAI chat-completions format (keys absent when unused)."""

    role: Literal["user", "assistant", "system", "tool"]
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class HistoryRequest(BaseModel):
    """What the history window may hold: the query of ``GET /history``, the body of
    ``POST /history`` (the one to use for a long system prompt: URLs are kept short)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_tokens": 4000, "system_prompt": "Be brief."}]},
    )

    max_messages: int | None = Field(
        default=None,
        ge=0,
        le=MAX_HISTORY_MESSAGES,
        description="At most this many messages (the system prompt aside).",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=0,
        le=MAX_HISTORY_TOKENS,
        description="Token budget, including the system prompt.",
    )
    system_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SYSTEM_PROMPT_LENGTH,
        description="Pinned first, always kept.",
    )
    include_incomplete: bool = Field(
        default=True,
        description="Keep replies that ended `interrupted` or `error` (their partial text); "
        "a reply still streaming is always left out.",
    )


class HistoryBody(HistoryRequest):
    """``POST /history``'s body: JSON has types, so ``"5"`` is not a number here (a query
    string has none, so ``GET`` converts it)."""

    model_config = ConfigDict(strict=True)


class History(BaseModel):
    """The model-ready window, oldest first: pass ``messages`` straight to the model."""

    conversation_id: PublicConversationId
    messages: list[ChatMessageOut]


class Status(BaseModel):
    status: Literal["ok", "ready"]


class ImportedConversationOut(BaseModel):
    """One conversation of an uploaded export: ``imported``, ``skipped`` or ``failed``."""

    status: Literal["imported", "skipped", "failed"]
    external_id: str | None = Field(description="`chatgpt:<id>`, `claude:<uuid>`, `openai:<id>`")
    title: str | None
    messages: int = Field(description="Messages written (or that a dry run would write).")
    conversation_id: PublicConversationId | None = Field(
        description="The stored conversation, if any."
    )
    reason: str | None = Field(description="Why it was skipped or failed (field and rule).")
    notes: list[str] = Field(description="What was dropped or kept as a label.")
    source: str | None = Field(description="The file of the export it came from.")


class ImportSummaryOut(BaseModel):
    imported: int
    skipped: int
    failed: int
    messages: int


class ImportReportOut(BaseModel):
    """What ``POST /v1/import`` did (or, with ``dry_run``, would do)."""

    format: str | None
    dry_run: bool
    summary: ImportSummaryOut
    conversations: list[ImportedConversationOut]
