"""The authenticated user: erasure (``DELETE /v1/users/me``)."""

from __future__ import annotations

from fastapi import APIRouter

from convostore.server.deps import CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.schemas import UserDeleted

router = APIRouter(prefix="/users", tags=["users"])


@router.delete("/me", response_model=UserDeleted, responses=responses(401, 422))
async def delete_me(user: CurrentUser, store: StoreDep) -> UserDeleted:
    """Erase the caller and every conversation and message of theirs (cannot be undone)."""
    return UserDeleted(id=user, deleted=await store.delete_user(user))
