"""``/v1/conversations/{id}/messages`` and ``/history``: append, page, window, truncate."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, status

from convostore._ops import MAX_MESSAGE_PAGE
from convostore.errors import ValidationError
from convostore.models import MAX_ID_LENGTH
from convostore.schemas import MessageCreate, MessagePublic
from convostore.server.deps import CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.routes.conversations import ConversationId
from convostore.server.schemas import (
    History,
    HistoryBody,
    HistoryRequest,
    MessageBatch,
    MessageList,
    MessageOut,
    MessagesDeleted,
)

router = APIRouter(prefix="/conversations/{conversation_id}", tags=["messages"])

MAX_POSITION = 2**31 - 1
Position = Annotated[int | None, Query(ge=0, le=MAX_POSITION)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_ID_LENGTH - 16,
        description="Retry-safe appends: a request repeated with the same key returns the "
        "stored message(s) instead of appending again.",
    ),
]


def _with_key(message: MessageCreate, key: str | None) -> MessageCreate:
    """Apply the Idempotency-Key header to a message; a different body ``key`` is an error."""
    if key is None:
        return message
    if message.key is not None and message.key != key:
        raise ValidationError("key", "differs from the Idempotency-Key header")
    return message.model_copy(update={"key": key})


@router.post(
    "/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses=responses(400, 401, 404, 409, 413),
)
async def append_message(
    conversation_id: ConversationId,
    body: Annotated[MessageCreate, Body(examples=[{"role": "user", "content": "Hello!"}])],
    user: CurrentUser,
    store: StoreDep,
    idempotency_key: IdempotencyKey = None,
) -> MessagePublic:
    """Append one message at the next position (bumps the conversation's ``updated_at``).

    Idempotent with a ``key`` in the body or an ``Idempotency-Key`` header: a retry
    returns the stored message.
    """
    return await store.append_message(user, conversation_id, _with_key(body, idempotency_key))


@router.post(
    "/messages/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageList,
    responses=responses(400, 401, 404, 409, 413),
)
async def append_messages(
    conversation_id: ConversationId,
    body: MessageBatch,
    user: CurrentUser,
    store: StoreDep,
    idempotency_key: IdempotencyKey = None,
) -> MessageList:
    """Append several messages in order at consecutive positions, all or nothing.

    With an ``Idempotency-Key`` header, message *i* without its own ``key`` gets the key
    ``<header>:<i>``, so retrying the whole request is safe.
    """
    items = body.messages
    if idempotency_key is not None:
        items = [
            m if m.key is not None else m.model_copy(update={"key": f"{idempotency_key}:{i}"})
            for i, m in enumerate(items)
        ]
    stored = await store.append_messages(user, conversation_id, items)
    return MessageList.model_validate({"data": stored, "has_more": False})


@router.get("/messages", response_model=MessageList, responses=responses(400, 401, 404))
async def list_messages(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: StoreDep,
    after: Annotated[Position, Query(description="Only messages after this position.")] = None,
    before: Annotated[Position, Query(description="Only messages before this position.")] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="By position.")] = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_MESSAGE_PAGE, description="Page size.")] = 100,
) -> MessageList:
    """Messages by position; pass ``next_cursor`` as ``after`` (asc) or ``before`` (desc)."""
    page = await store.list_messages(
        user, conversation_id, after=after, before=before, order=order, limit=limit
    )
    return MessageList.model_validate(page, from_attributes=True)


@router.delete("/messages", response_model=MessagesDeleted, responses=responses(400, 401, 404))
async def delete_messages_after(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: StoreDep,
    after: Annotated[
        int,
        Query(
            ge=0, le=MAX_POSITION, description="Keep messages up to this position; delete the rest."
        ),
    ],
) -> MessagesDeleted:
    """Delete every message after position ``after`` (regenerate / edit flows)."""
    removed = await store.delete_messages_after(user, conversation_id, after)
    return MessagesDeleted.model_validate({"data": removed})


@router.delete("/messages/last", response_model=MessagesDeleted, responses=responses(400, 401, 404))
async def pop_message(
    conversation_id: ConversationId, user: CurrentUser, store: StoreDep
) -> MessagesDeleted:
    """Remove the last message; ``data`` holds it, or is empty if there was none."""
    removed = await store.pop_message(user, conversation_id)
    return MessagesDeleted.model_validate({"data": [removed] if removed is not None else []})


async def _window(
    store: StoreDep, user: str, conversation_id: int, params: HistoryRequest
) -> History:
    window = await store.get_history(
        user,
        conversation_id,
        max_messages=params.max_messages,
        max_tokens=params.max_tokens,
        system_prompt=params.system_prompt,
        include_incomplete=params.include_incomplete,
    )
    return History.model_validate({"conversation_id": conversation_id, "messages": window})


@router.get(
    "/history",
    response_model=History,
    response_model_exclude_unset=True,
    responses=responses(400, 401, 404),
)
async def get_history(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: StoreDep,
    params: Annotated[HistoryRequest, Query()],
) -> History:
    """The model-ready window (OpenAI chat format), oldest first.

    The newest messages that fit ``max_messages`` / ``max_tokens``; a tool call and its
    results are kept or dropped together. For a long ``system_prompt`` use ``POST``: the HTTP
    server may refuse a request line and headers over 16 KiB in all, in plain text.
    """
    return await _window(store, user, conversation_id, params)


@router.post(
    "/history",
    response_model=History,
    response_model_exclude_unset=True,
    responses=responses(400, 401, 404, 413),
)
async def post_history(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: StoreDep,
    params: HistoryBody,
) -> History:
    """The same window as ``GET /history``, its parameters in a JSON body (reads nothing
    else, changes nothing): the way to send a system prompt of any length."""
    return await _window(store, user, conversation_id, params)
