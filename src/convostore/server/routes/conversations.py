"""``/v1/conversations``: create, list (cursor pages), read, update, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from convostore._ops import MAX_CONVERSATION_PAGE
from convostore.schemas import ConversationPublic
from convostore.server.deps import AfterCursor, CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.schemas import (
    ConversationCreate,
    ConversationDeleted,
    ConversationList,
    ConversationUpdate,
)

router = APIRouter(prefix="/conversations", tags=["conversations"])

MAX_ID = 2**63 - 1
ConversationId = Annotated[
    int,
    Path(
        ge=1, le=MAX_ID, description="The conversation's id (as returned on create).", examples=[1]
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationPublic,
    responses=responses(400, 401, 409, 413, 422),
)
async def create_conversation(
    body: ConversationCreate, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """Start a conversation, optionally with a title, metadata and initial messages.

    Without a title, the first line of the first user message becomes the title.
    `temporary: true` makes a temporary chat (its own, shorter retention); `retention`
    gives it a policy of its own. Past `expires_at` it is gone (404) unless on `hold`.
    """
    return await store.create_conversation(
        user,
        title=body.title,
        metadata=body.metadata,
        messages=body.messages,
        external_id=body.external_id,
        temporary=body.temporary,
        retention=body.retention,
    )


@router.get("", response_model=ConversationList, responses=responses(401, 422))
async def list_conversations(
    user: CurrentUser,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_CONVERSATION_PAGE, description="Page size.")] = 20,
    after: AfterCursor = None,
) -> ConversationList:
    """The caller's conversations, most recently active first (keyset pagination)."""
    page = await store.list_conversations(user, limit=limit, cursor=after)
    return ConversationList(data=page.data, has_more=page.has_more, next_cursor=page.next_cursor)


@router.get(
    "/{conversation_id}", response_model=ConversationPublic, responses=responses(401, 404, 422)
)
async def get_conversation(
    conversation_id: ConversationId, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """One conversation of the caller."""
    return await store.get_conversation(user, conversation_id)


@router.patch(
    "/{conversation_id}",
    response_model=ConversationPublic,
    responses=responses(400, 401, 404, 413, 422),
)
async def update_conversation(
    conversation_id: ConversationId, body: ConversationUpdate, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """Rename, replace the metadata, set or clear the `hold`, or change the `retention`
    policy (`"none"`: never expires). Fields left out are unchanged; ``null`` clears."""
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    return await store.update_conversation(user, conversation_id, **changes)


@router.delete(
    "/{conversation_id}", response_model=ConversationDeleted, responses=responses(401, 404, 422)
)
async def delete_conversation(
    conversation_id: ConversationId, user: CurrentUser, store: StoreDep
) -> ConversationDeleted:
    """Delete a conversation and all of its messages."""
    await store.delete_conversation(user, conversation_id)
    return ConversationDeleted(id=conversation_id)
