"""``POST /v1/import``: upload a ChatGPT, Claude or OpenAI Conversations export.

    curl -H "Authorization: Bearer $TOKEN" --data-binary @chatgpt-export.zip \
         -H "Content-Type: application/zip" "http://127.0.0.1:8000/v1/import?dry_run=true"

The body is the export itself (JSON, JSON Lines or a zip), or a ``multipart/form-data``
form with the export in its ``file`` field. It is streamed to a temporary file (bounded by
``CONVOSTORE_MAX_IMPORT_BYTES``, not by the global body limit), then imported in a worker
thread with :func:`convostore.importers.import_upload` for the token's user: memory stays
bounded whatever the size. The answer is the report, 200 even when some conversations
failed (each says why); an upload that is no export at all is a 400.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
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
    responses=responses(400, 401, 413, 503),
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
    async with _received(request) as (upload, name):
        with _import_engine(store) as engine:
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


@asynccontextmanager
async def _received(request: Request) -> AsyncIterator[tuple[IO[bytes], str]]:
    """The uploaded export as a seekable binary file, and its name (closed afterwards)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # Starlette's parser spools the file part to disk past 1 MiB: bounded memory.
        async with request.form(max_files=1, max_fields=8) as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise ValidationError("file", "the multipart form must carry the export in `file`")
            part.file.seek(0)
            yield part.file, part.filename or "upload"
        return
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
        async for chunk in request.stream():
            spooled.write(chunk)
        spooled.seek(0)
        yield spooled, "upload"


@contextmanager
def _import_engine(store: AsyncStore) -> Iterator[Engine]:
    """A sync engine on the store's database for the import thread.

    SQLite: the store's own sync engine (and so its in-process write lock). Otherwise a
    small engine of its own for this import, released when it ends.
    """
    threaded = store._threaded
    if threaded is not None:
        yield threaded.engine
        return
    engine = make_engine(store.engine.url, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        engine.dispose()
