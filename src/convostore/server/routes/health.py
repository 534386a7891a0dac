"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: the database does)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import text

from convostore.server.deps import StoreDep
from convostore.server.errors import ApiError, responses
from convostore.server.schemas import Status

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 5.0


@router.get("/healthz", response_model=Status, summary="Liveness", responses=responses(400))
async def healthz() -> Status:
    """The process is up (does not touch the database)."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, summary="Readiness", responses=responses(400, 503))
async def readyz(store: StoreDep) -> Status:
    """Runs ``SELECT 1`` on the database; 503 when it does not answer."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with store.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        raise ApiError(
            503, "unavailable", f"database: not reachable ({type(exc).__name__})"
        ) from None
    return Status(status="ready")
