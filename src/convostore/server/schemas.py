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
from convostore.schemas import ConversationPublic, MessageCreate, MessagePublic, Page

__all__ = [
    "ChatMessageOut",
    "ConversationCreate",
    "ConversationDeleted",
    "ConversationList",
    "ConversationUpdate",
    "History",
    "MessageBatch",
    "MessageList",
    "MessagesDeleted",
    "Status",
    "UserDeleted",
]


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


class ConversationUpdate(BaseModel):
    """Fields to change; a field left out is unchanged, ``null`` clears it."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"title": "Renamed"}]}
    )

    title: str | None = Field(default=None, max_length=MAX_TITLE_LENGTH)
    metadata: dict[str, Any] | None = None


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


class History(BaseModel):
    """The model-ready window, oldest first: pass ``messages`` straight to the model."""

    conversation_id: int
    messages: list[ChatMessageOut]


class Status(BaseModel):
    status: Literal["ok", "ready"]
