"""``/v1/search``: full-text search over the caller's messages and conversation titles."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from convostore._ops import MAX_SEARCH_PAGE
from convostore.errors import ValidationError
from convostore.schemas import MAX_QUERY_LENGTH, RoleName
from convostore.server.deps import AfterCursor, CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.routes.conversations import MAX_ID
from convostore.server.schemas import SearchResults

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchResults, responses=responses(401, 422))
async def search(
    user: CurrentUser,
    store: StoreDep,
    q: Annotated[
        str,
        Query(
            max_length=MAX_QUERY_LENGTH,
            description='Words that must all match; `"a phrase"`; `word*` for a prefix. '
            "Nothing is syntax that can fail; no letter or digit: an empty page.",
            examples=["pasta recipe"],
        ),
    ],
    conversation_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this conversation.")
    ] = None,
    role: Annotated[
        list[RoleName] | None,
        Query(description="Only messages of these roles (repeatable); leaves title hits out."),
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Only messages created at or after (UTC if naive).")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Only messages created before (UTC if naive).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_PAGE, description="Page size.")] = 20,
    after: AfterCursor = None,
) -> SearchResults:
    """The caller's best matching messages (and conversation titles) first.

    Each hit carries its message, the conversation's id and title, a snippet with every
    match between `**`, and its rank; a title hit (`kind: "title"`) carries the
    conversation's newest message.
    """
    try:
        page = await store.search(
            user,
            q,
            conversation_id=conversation_id,
            roles=role,
            since=since,
            until=until,
            limit=limit,
            cursor=after,
        )
    except ValidationError as exc:
        names = {"query": "q", "roles": "role", "cursor": "after"}
        if exc.field in names:
            raise ValidationError(names[exc.field], exc.rule) from None
        raise
    return SearchResults(data=page.data, has_more=page.has_more, next_cursor=page.next_cursor)
