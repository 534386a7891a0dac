"""``/v1/conversations/{id}/items``: OpenAI's Conversations API items, over stored messages.

One item is one message (:mod:`convostore.items`, the mapping the Agents adapter uses too):
items added here are kept verbatim and read back as they were given, with the server's
``<prefix>_<n>`` id (``n`` the message's row id); messages written through convostore's own
routes read as their item equivalents. Lists are OpenAI's pages (``desc`` by default):
pass ``last_id`` as ``after``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status

from convostore.errors import ConflictError, NotFoundError, ValidationError
from convostore.items import conversation_items, items_to_messages, parse_item_id
from convostore.schemas import ConversationPublic, MessagePublic
from convostore.server.deps import CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.routes.conversations import ConversationId
from convostore.server.schemas import ConversationItemList, ConversationOut, ItemsCreate
from convostore.store import AsyncStore

router = APIRouter(prefix="/conversations/{conversation_id}/items", tags=["items"])

MAX_ITEM_PAGE = 100
Item = dict[str, Any]

ItemId = Annotated[
    str,
    Path(max_length=64, description="The item's id (`msg_12`, `fc_12`...).", examples=["msg_1"]),
]
_INCLUDE_HELP = (
    "OpenAI's extra output fields: accepted, and nothing is left out to include (an item "
    "is stored whole)."
)


def _include(
    include: Annotated[list[str] | None, Query(max_length=16, description=_INCLUDE_HELP)] = None,
    brackets: Annotated[
        list[str] | None,
        Query(alias="include[]", max_length=16, description="`include`, as the clients send it."),
    ] = None,
) -> list[str]:
    return [*(include or ()), *(brackets or ())]


Include = Annotated[list[str], Depends(_include)]


def _page(items: list[Item], has_more: bool) -> ConversationItemList:
    return ConversationItemList(
        data=items,
        first_id=items[0]["id"] if items else None,
        last_id=items[-1]["id"] if items else None,
        has_more=has_more,
    )


async def _resolve(
    store: AsyncStore, user: str, conversation_id: int, item_id: str, field: str = "item_id"
) -> tuple[MessagePublic, int]:
    """The stored message an item id names and the item's index in it (404 if none)."""
    row_id, index = parse_item_id(item_id, field)
    try:
        row = await store.get_message(user, conversation_id, row_id)
    except NotFoundError as exc:
        if exc.kind == "message":
            raise NotFoundError("item", item_id) from None
        raise
    if index >= len(conversation_items(row)):
        raise NotFoundError("item", item_id)
    return row, index


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationItemList,
    responses=responses(400, 401, 404, 413),
)
async def create_items(
    conversation_id: ConversationId,
    body: ItemsCreate,
    user: CurrentUser,
    store: StoreDep,
    include: Include,
) -> ConversationItemList:
    """Append up to 20 items in order, all or nothing; answers them with their ids."""
    messages = items_to_messages(body.items, max_content_length=store.config.max_content_length)
    stored = await store.append_messages(user, conversation_id, messages) if messages else []
    if not messages:  # nothing to write: still a 404 for a conversation that is not there
        await store.get_conversation(user, conversation_id)
    return _page([item for row in stored for item in conversation_items(row)], False)


@router.get("", response_model=ConversationItemList, responses=responses(400, 401, 404))
async def list_items(
    conversation_id: ConversationId,
    user: CurrentUser,
    store: StoreDep,
    include: Include,
    after: Annotated[
        str | None,
        Query(max_length=64, description="An item id: only the items after it, in `order`."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEM_PAGE, description="Page size.")] = 20,
    order: Annotated[Literal["asc", "desc"], Query(description="Oldest or newest first.")] = "desc",
) -> ConversationItemList:
    """The conversation's items, newest first unless `order=asc`."""
    descending = order == "desc"
    found: list[Item] = []
    position: int | None = None
    if after is not None:
        try:
            row, index = await _resolve(store, user, conversation_id, after, "after")
        except NotFoundError as exc:
            if exc.kind == "item":
                raise ValidationError("after", f"no item {after!r} in this conversation") from None
            raise
        items = conversation_items(row)
        found = items[:index][::-1] if descending else items[index + 1 :]
        position = row.position
    more = True
    while more and len(found) <= limit:
        page = await store.list_messages(
            user,
            conversation_id,
            after=None if descending else position,
            before=position if descending else None,
            order=order,
            limit=limit + 1 - len(found),
        )
        for row in page.data:
            items = conversation_items(row)
            found.extend(reversed(items) if descending else items)
        more = page.has_more
        if page.data:
            position = page.data[-1].position
    return _page(found[:limit], len(found) > limit)


@router.get("/{item_id}", response_model=dict[str, Any], responses=responses(400, 401, 404))
async def get_item(
    conversation_id: ConversationId,
    item_id: ItemId,
    user: CurrentUser,
    store: StoreDep,
    include: Include,
) -> Item:
    """One item of the conversation."""
    row, index = await _resolve(store, user, conversation_id, item_id)
    return conversation_items(row)[index]


@router.delete(
    "/{item_id}", response_model=ConversationOut, responses=responses(400, 401, 404, 409)
)
async def delete_item(
    conversation_id: ConversationId, item_id: ItemId, user: CurrentUser, store: StoreDep
) -> ConversationPublic:
    """Delete one item; answers the conversation, as OpenAI does. (A message written
    through convostore's own routes that stands for several items, e.g. text and tool
    calls, is deleted only whole, through those routes: 409 here.)"""
    row, _ = await _resolve(store, user, conversation_id, item_id)
    if len(conversation_items(row)) > 1:
        raise ConflictError(
            f"item {item_id!r} is one of several items of message {row.id}; delete that "
            "message through the messages routes"
        )
    await store.delete_message(user, conversation_id, row.id)
    return await store.get_conversation(user, conversation_id)
