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
from convostore.server.schemas import SearchResults, parse_conversation_id

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchResults, responses=responses(400, 401))
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
        str | None,
        Query(max_length=40, description="Only this conversation (`conv_<n>`, or `<n>`)."),
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
    only = None if conversation_id is None else parse_conversation_id(conversation_id)
    try:
        page = await store.search(
            user,
            q,
            conversation_id=only,
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
    return SearchResults.model_validate(page, from_attributes=True)
