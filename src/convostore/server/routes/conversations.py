"""``/v1/conversations``: OpenAI's Conversations API (create, retrieve, update, delete),
with convostore's own fields and routes beside it (list, ``PATCH``, external ids, retention).

A conversation's id is ``conv_<n>`` (the library's integer id ``n``); a path also takes the
bare ``<n>``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, status

from convostore._ops import MAX_CONVERSATION_PAGE
from convostore.errors import ValidationError
from convostore.items import items_to_messages
from convostore.schemas import ConversationPublic
from convostore.server.deps import AfterCursor, CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.schemas import (
    MAX_ID,
    ConversationCreate,
    ConversationDeleted,
    ConversationList,
    ConversationOut,
    ConversationUpdate,
    parse_conversation_id,
)

__all__ = ["MAX_ID", "ConversationId", "router"]

router = APIRouter(prefix="/conversations", tags=["conversations"])


def _path_conversation_id(
    conversation_id: Annotated[
        str,
        Path(
            max_length=40,
            description="The conversation's id, `conv_<n>` as returned on create (the bare "
            "`<n>` too).",
            examples=["conv_1"],
        ),
    ],
) -> int:
    return parse_conversation_id(conversation_id)


#: A conversation id path parameter (``conv_12`` or ``12``), as the store's integer id.
ConversationId = Annotated[int, Depends(_path_conversation_id)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationOut,
    responses=responses(400, 401, 409, 413),
)
async def create_conversation(
    body: ConversationCreate, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """Start a conversation, optionally with metadata and initial `items` (OpenAI's, up to
    20) or `messages` (ours, up to 1,000), a title, an external id.

    Without a title, the first line of the first user message becomes the title.
    `temporary: true` makes a temporary chat (its own, shorter retention); `retention`
    gives it a policy of its own. Past `expires_at` it is gone (404) unless on `hold`.
    """
    messages: list[Any] = list(body.messages)
    if body.items is not None:
        if messages:
            raise ValidationError("items", "give items or messages, not both")
        limit = store.config.max_content_length
        messages = items_to_messages(body.items, max_content_length=limit)
    return await store.create_conversation(
        user,
        title=body.title,
        metadata=body.metadata,
        messages=messages,
        external_id=body.external_id,
        temporary=body.temporary,
        retention=body.retention,
    )


@router.get("", response_model=ConversationList, responses=responses(400, 401))
async def list_conversations(
    user: CurrentUser,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_CONVERSATION_PAGE, description="Page size.")] = 20,
    after: AfterCursor = None,
) -> ConversationList:
    """The caller's conversations, most recently active first (keyset pagination); a
    convostore extension (OpenAI has no such list)."""
    page = await store.list_conversations(user, limit=limit, cursor=after)
    return ConversationList.model_validate(page, from_attributes=True)


@router.get(
    "/{conversation_id}", response_model=ConversationOut, responses=responses(400, 401, 404)
)
async def get_conversation(
    conversation_id: ConversationId, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """One conversation of the caller."""
    return await store.get_conversation(user, conversation_id)


@router.post(
    "/{conversation_id}",
    response_model=ConversationOut,
    responses=responses(400, 401, 404, 413),
    summary="Update Conversation (OpenAI)",
)
@router.patch(
    "/{conversation_id}",
    response_model=ConversationOut,
    responses=responses(400, 401, 404, 413),
)
async def update_conversation(
    conversation_id: ConversationId, body: ConversationUpdate, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """Replace the metadata (OpenAI's update, `POST`), rename, set or clear the `hold`, or
    change the `retention` policy (`"none"`: never expires). `POST` and `PATCH` take the
    same body: fields left out are unchanged; ``null`` clears."""
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    return await store.update_conversation(user, conversation_id, **changes)


@router.delete(
    "/{conversation_id}", response_model=ConversationDeleted, responses=responses(400, 401, 404)
)
async def delete_conversation(
    conversation_id: ConversationId, user: CurrentUser, store: StoreDep
) -> ConversationDeleted:
    """Delete a conversation and all of its messages (OpenAI's `conversation.deleted`)."""
    await store.delete_conversation(user, conversation_id)
    return ConversationDeleted.model_validate({"id": conversation_id})
