"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from convostore.server.routes import (
    conversations,
    health,
    imports,
    items,
    messages,
    search,
    streaming,
    users,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(conversations.router, prefix="/v1")
api_router.include_router(items.router, prefix="/v1")
api_router.include_router(messages.router, prefix="/v1")
api_router.include_router(search.router, prefix="/v1")
api_router.include_router(streaming.router, prefix="/v1")
api_router.include_router(users.router, prefix="/v1")
api_router.include_router(imports.router, prefix="/v1")

__all__ = ["api_router"]
