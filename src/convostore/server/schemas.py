"""Request and response bodies of the REST API (the shapes shown at ``/docs``).

Messages are :class:`convostore.schemas.MessageCreate` in and
:class:`convostore.schemas.MessagePublic` out, exactly as in the library; lists are
``{"data": [...], "has_more": bool, "next_cursor": str | null}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from convostore._ops import MAX_BATCH
from convostore.models import MAX_ID_LENGTH, MAX_TITLE_LENGTH
from convostore.schemas import (
    MAX_HISTORY_MESSAGES,
    MAX_HISTORY_TOKENS,
    MAX_SYSTEM_PROMPT_LENGTH,
    ConversationPublic,
    MessageCreate,
    MessagePublic,
    Page,
    RetentionPolicy,
    SearchHit,
)

__all__ = [
    "ChatMessageOut",
    "ConversationCreate",
    "ConversationDeleted",
    "ConversationList",
    "ConversationUpdate",
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


_RETENTION_HELP = (
    'How long it lives after its last activity: "30d", "12h", "90m", "2w", or "none" '
    "(never expires)."
)


class ConversationCreate(BaseModel):
    """A new conversation; ``messages`` are appended atomically with it."""

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

    title: str | None = Field(default=None, max_length=MAX_TITLE_LENGTH)
    metadata: dict[str, Any] | None = None
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
    metadata: dict[str, Any] | None = None
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


class ConversationList(Page[ConversationPublic]):
    """A page of conversations, most recently active first; pass ``next_cursor`` as ``after``."""


class MessageList(Page[MessagePublic]):
    """A page of messages by position; ``next_cursor`` is the position to pass as
    ``after`` (order=asc) or ``before`` (order=desc)."""


class SearchResults(Page[SearchHit]):
    """Search hits, best first; pass ``next_cursor`` as ``after`` for the next page."""


class MessagesDeleted(BaseModel):
    """The messages a pop or truncate removed, oldest first (empty if there were none)."""

    data: list[MessagePublic]


class ConversationDeleted(BaseModel):
    id: int
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

    conversation_id: int
    messages: list[ChatMessageOut]


class Status(BaseModel):
    status: Literal["ok", "ready"]


class ImportedConversationOut(BaseModel):
    """One conversation of an uploaded export: ``imported``, ``skipped`` or ``failed``."""

    status: Literal["imported", "skipped", "failed"]
    external_id: str | None = Field(description="`chatgpt:<id>`, `claude:<uuid>`, `openai:<id>`")
    title: str | None
    messages: int = Field(description="Messages written (or that a dry run would write).")
    conversation_id: int | None = Field(description="The stored conversation, if any.")
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
