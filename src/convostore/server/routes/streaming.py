"""Streamed replies: begin, deltas, finish/fail/interrupt, and following one over SSE.

    POST /v1/conversations/{id}/messages/begin               reserve the reply (streaming)
    POST /v1/conversations/{id}/messages/{mid}/deltas        {"seq": 0, "text": "Hel"}
    POST /v1/conversations/{id}/messages/{mid}/finish        complete it
    POST /v1/conversations/{id}/messages/{mid}/fail          end it as error
    POST /v1/conversations/{id}/messages/{mid}/interrupt     end it as interrupted
    GET  /v1/conversations/{id}/messages/{mid}/chunks        the deltas after a seq (JSON)
    GET  /v1/conversations/{id}/messages/{mid}/stream        Server-Sent Events

The event stream replays the deltas after ``Last-Event-ID`` (or ``?after_seq=``) as
``delta`` events (``id`` = seq, data ``{"seq", "text"}``), follows new ones, and ends with
one ``end`` event whose data is the final message (``status`` and the whole ``content``),
or a ``deleted`` event if the message is deleted while it is followed.
Framing and keep-alive comments are FastAPI's own (``fastapi.sse``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field

from convostore._ops import MAX_CHUNK_PAGE
from convostore.errors import NotFoundError, ValidationError
from convostore.models import MAX_ID_LENGTH
from convostore.schemas import MAX_SEQ, MessagePublic, StreamChunk, StreamRead
from convostore.server.deps import CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.routes.conversations import MAX_ID, ConversationId
from convostore.server.routes.messages import IdempotencyKey
from convostore.server.schemas import MessageOut, StreamReadOut
from convostore.streaming import follow_stream

router = APIRouter(prefix="/conversations/{conversation_id}/messages", tags=["streaming"])

MessageId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The streamed message's id.", examples=[2])
]


class BeginBody(BaseModel):
    """A reply about to be streamed."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["assistant", "user", "system"] = "assistant"
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Idempotency key: a retried begin returns the same message.",
    )
    metadata: dict[str, Any] | None = None


class DeltaBody(BaseModel):
    """One delta: ``seq`` is the writer's own order (0, 1, 2, ...; a retry repeats it)."""

    # JSON has types: "5" or 5.0 is not a seq.
    model_config = ConfigDict(extra="forbid", strict=True)

    seq: int = Field(ge=0, le=MAX_SEQ)
    text: str = Field(min_length=1)


class DeltaStored(BaseModel):
    """Whether the delta was stored now (``false``: a retry of a stored one)."""

    message_id: int
    seq: int
    stored: bool


class FinishBody(BaseModel):
    """Complete the reply: ``content`` defaults to the deltas joined in seq order."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None


class EndBody(BaseModel):
    """End the reply early; ``metadata`` (e.g. the error) replaces the message's."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] | None = None


@router.post(
    "/begin",
    status_code=201,
    response_model=MessageOut,
    responses=responses(400, 401, 404, 409, 413),
)
async def begin_message(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: StoreDep,
    body: Annotated[BeginBody | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> MessagePublic:
    """Reserve the next position for a reply that will be streamed (status ``streaming``).

    One reply streams per conversation at a time (409 otherwise, until it ends or its
    lease runs out); messages appended meanwhile come after it.
    """
    body = body or BeginBody()
    key = body.key
    if idempotency_key is not None:
        if key is not None and key != idempotency_key:
            raise ValidationError("key", "differs from the Idempotency-Key header")
        key = idempotency_key
    return await store.begin_message(
        user, conversation_id, role=body.role, key=key, metadata=body.metadata
    )


@router.post(
    "/{message_id}/deltas",
    response_model=DeltaStored,
    responses=responses(400, 401, 404, 409, 413),
)
async def append_delta(
    conversation_id: ConversationId,
    message_id: MessageId,
    body: DeltaBody,
    user: CurrentUser,
    store: StoreDep,
) -> DeltaStored:
    """Store one delta (once per ``seq``: a retry changes nothing) and renew the lease."""
    stored = await store.append_delta(
        user, message_id, body.seq, body.text, conversation_id=conversation_id
    )
    return DeltaStored(message_id=message_id, seq=body.seq, stored=stored)


@router.post(
    "/{message_id}/finish",
    response_model=MessageOut,
    responses=responses(400, 401, 404, 409, 413),
)
async def finish_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    store: StoreDep,
    body: Annotated[FinishBody | None, Body()] = None,
) -> MessagePublic:
    """Complete the reply (a retry returns it; 409 if it had ended otherwise)."""
    body = body or FinishBody()
    return await store.finish_message(
        user,
        message_id,
        content=body.content,
        tool_calls=body.tool_calls,
        metadata=body.metadata,
        conversation_id=conversation_id,
    )


@router.post(
    "/{message_id}/fail",
    response_model=MessageOut,
    responses=responses(400, 401, 404, 409, 413),
)
async def fail_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    store: StoreDep,
    body: Annotated[EndBody | None, Body()] = None,
) -> MessagePublic:
    """End the reply with status ``error``, keeping the text received so far."""
    metadata = body.metadata if body else None
    return await store.fail_message(
        user, message_id, metadata=metadata, conversation_id=conversation_id
    )


@router.post(
    "/{message_id}/interrupt",
    response_model=MessageOut,
    responses=responses(400, 401, 404, 409, 413),
)
async def interrupt_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    store: StoreDep,
    body: Annotated[EndBody | None, Body()] = None,
) -> MessagePublic:
    """End the reply with status ``interrupted`` (stop pressed), keeping its text."""
    metadata = body.metadata if body else None
    return await store.interrupt_message(
        user, message_id, metadata=metadata, conversation_id=conversation_id
    )


AfterSeq = Annotated[
    int | None,
    Query(ge=0, le=MAX_SEQ, description="Only deltas after this seq (the last one you have)."),
]


@router.get(
    "/{message_id}/chunks", response_model=StreamReadOut, responses=responses(400, 401, 404)
)
async def read_stream(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    store: StoreDep,
    after_seq: AfterSeq = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CHUNK_PAGE)] = 1000,
) -> StreamRead:
    """The message (status, content so far) and its stored deltas after ``after_seq``."""
    return await store.read_stream(
        user, message_id, after_seq, limit=limit, conversation_id=conversation_id
    )


async def _start(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    store: StoreDep,
    after_seq: AfterSeq = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=16,
            description="The seq of the last delta received; replay starts after it.",
        ),
    ] = None,
) -> int | None:
    """Check the message before the response starts (a 404 is a JSON error, not an
    event), and where to resume: ``Last-Event-ID`` wins over ``after_seq``."""
    if last_event_id is not None and last_event_id.strip():
        try:
            after_seq = int(last_event_id)
        except ValueError:
            raise ValidationError("Last-Event-ID", "must be a delta's seq") from None
        if not 0 <= after_seq <= MAX_SEQ:
            raise ValidationError("Last-Event-ID", f"must be between 0 and {MAX_SEQ}")
    await store.read_stream(user, message_id, after_seq, limit=0, conversation_id=conversation_id)
    return after_seq


def _json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """:func:`responses` for a route whose own media type is not JSON: its errors are."""
    out = responses(*statuses)
    for entry in out.values():
        del entry["model"]
        entry["content"] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
        }
    return out


@router.get(
    "/{message_id}/stream",
    response_class=EventSourceResponse,
    responses=_json_errors(400, 401, 404),
)
async def follow(
    conversation_id: ConversationId,
    message_id: MessageId,
    user: CurrentUser,
    store: StoreDep,
    after_seq: Annotated[int | None, Depends(_start)],
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``delta`` events (``id`` = seq) after ``Last-Event-ID``, live,
    then one ``end`` event with the final message (its ``content`` is the whole text), or
    ``deleted`` if the message is deleted meanwhile (regenerate, a deleted conversation)."""
    try:
        async for event in follow_stream(
            store, user, message_id, after_seq, conversation_id=conversation_id
        ):
            if isinstance(event, StreamChunk):
                yield ServerSentEvent(event="delta", id=str(event.seq), data=event)
            else:
                yield ServerSentEvent(event="end", data=MessageOut.model_validate(event))
    except NotFoundError:
        # It existed when the response started (_start): it was deleted since.
        yield ServerSentEvent(event="deleted", data={"id": message_id})
