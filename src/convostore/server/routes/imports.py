"""``POST /v1/import``: upload a ChatGPT, Claude or OpenAI Conversations export.

    curl -H "Authorization: Bearer $TOKEN" --data-binary @chatgpt-export.zip \
         -H "Content-Type: application/zip" "http://127.0.0.1:8000/v1/import?dry_run=true"

The body is the export itself (JSON, JSON Lines or a zip), or a ``multipart/form-data``
form with the export in its ``file`` field. It is streamed to a temporary file (bounded by
``CONVOSTORE_MAX_IMPORT_BYTES``, not by the global body limit), then imported in a worker
thread with :func:`convostore.importers.import_upload` for the token's user: memory stays
bounded whatever the size. The answer is the report, 200 even when some conversations
failed (each says why); an upload that is no export at all is a 422.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from sqlalchemy.engine import Engine
from starlette.datastructures import UploadFile

from convostore.db import make_engine
from convostore.errors import ValidationError
from convostore.importers import import_upload
from convostore.server.deps import CurrentUser, StoreDep
from convostore.server.errors import responses
from convostore.server.schemas import ImportReportOut
from convostore.store import AsyncStore

router = APIRouter(tags=["import"])

#: Bytes of an upload kept in memory before the temporary file spills to disk.
SPOOL_BYTES = 1024 * 1024

ImportFormatParam = Literal["auto", "chatgpt", "claude", "openai"]


@router.post(
    "/import",
    response_model=ImportReportOut,
    responses=responses(400, 401, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "description": "The export: conversations.json, a JSON Lines file of items, or a "
            "zip; raw, or as the `file` field of a multipart form.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    },
)
async def import_export(
    request: Request,
    user: CurrentUser,
    store: StoreDep,
    format: Annotated[
        ImportFormatParam, Query(description="The export's format; auto detects it.")
    ] = "auto",
    dry_run: Annotated[
        bool, Query(description="Read and validate everything, write nothing.")
    ] = False,
) -> dict[str, Any]:
    """Import an export for the caller; each conversation all-or-nothing, re-imports skipped."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
        upload, name = await _receive(request, spooled)
        engine = import_engine(request.app, store)
        report = await asyncio.to_thread(
            import_upload,
            engine,
            upload,
            user_id=user,
            name=name,
            format=format,
            dry_run=dry_run,
            max_content_length=store.config.max_content_length,
        )
    return report.to_dict()


async def _receive(request: Request, spooled: IO[bytes]) -> tuple[IO[bytes], str]:
    """The uploaded export as a seekable binary file, and its name."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # Starlette's parser spools the file part to disk past 1 MiB: bounded memory.
        form = await request.form(max_files=1, max_fields=8)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ValidationError("file", "the multipart form must carry the export in `file`")
        # The form (and its temporary file) lives as long as the request.
        part.file.seek(0)
        return part.file, part.filename or "upload"
    async for chunk in request.stream():
        spooled.write(chunk)
    spooled.seek(0)
    return spooled, "upload"


def import_engine(app: FastAPI, store: AsyncStore) -> Engine:
    """A sync engine on the store's database for the import thread (made once per app)."""
    engine: Engine | None = getattr(app.state, "import_engine", None)
    if engine is None:
        threaded = store._threaded  # SQLite: the store's own sync engine and write lock
        engine = threaded.engine if threaded is not None else make_engine(store.engine.url)
        app.state.import_engine = engine
    return engine


def close_import_engine(app: FastAPI) -> None:
    """Release the import engine's pool (the SQLite store's engine is the store's own)."""
    engine: Engine | None = getattr(app.state, "import_engine", None)
    store = getattr(app.state, "store", None)
    threaded = getattr(store, "_threaded", None)
    if engine is not None and (threaded is None or engine is not threaded.engine):
        engine.dispose()
    app.state.import_engine = None
