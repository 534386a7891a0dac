"""The authenticated user: erasure (``DELETE /v1/users/me``) and retention defaults."""

from __future__ import annotations

from fastapi import APIRouter

from convostore.schemas import RetentionPolicy
from convostore.server.deps import CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.schemas import RetentionPolicyUpdate, UserDeleted

router = APIRouter(prefix="/users", tags=["users"])


@router.delete("/me", response_model=UserDeleted, responses=responses(400, 401))
async def delete_me(user: CurrentUser, store: StoreDep) -> UserDeleted:
    """Erase the caller and every conversation and message of theirs (cannot be undone)."""
    return UserDeleted(id=user, deleted=await store.delete_user(user))


@router.get("/me/retention", response_model=RetentionPolicy, responses=responses(400, 401))
async def get_retention(user: CurrentUser, store: StoreDep) -> RetentionPolicy:
    """Your retention defaults for new conversations (`null`: the server's default)."""
    return await store.get_retention_policy(user)


@router.patch("/me/retention", response_model=RetentionPolicy, responses=responses(400, 401, 413))
async def set_retention(
    body: RetentionPolicyUpdate, user: CurrentUser, store: StoreDep
) -> RetentionPolicy:
    """Set your defaults for new conversations (`"30d"`, `"none"`); existing ones keep
    theirs. Fields left out are unchanged; `null` goes back to the server's default."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return await store.set_retention_policy(user, **changes)
