"""``POST /v1/import``: uploads of each format, size limits, errors as JSON, never a 500."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI

from convostore import AsyncStore
from convostore.config import Settings
from convostore.server import create_app
from tests.server.conftest import Auth, assert_error

DATA = Path(__file__).parent.parent / "data" / "imports"
CHATGPT = (DATA / "chatgpt-conversations.json").read_bytes()


async def test_raw_upload_imports_for_the_token_user(
    client: httpx.AsyncClient, auth: Auth, astore: AsyncStore
) -> None:
    r = await client.post("/v1/import", content=CHATGPT, headers=auth("alice"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "chatgpt" and body["dry_run"] is False
    assert body["summary"] == {"imported": 2, "skipped": 0, "failed": 1, "messages": 8}
    statuses = [c["status"] for c in body["conversations"]]
    assert statuses == ["imported", "failed", "imported"]
    assert body["conversations"][1]["reason"] == "mapping: node 'gone' of the branch is missing"
    assert len((await astore.list_conversations("alice")).data) == 2
    assert (await astore.list_conversations("bob")).data == []
    again = await client.post("/v1/import", content=CHATGPT, headers=auth("alice"))
    assert again.json()["summary"]["skipped"] == 2


async def test_multipart_zip_and_dry_run(
    client: httpx.AsyncClient, auth: Auth, astore: AsyncStore
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("conversations.json", (DATA / "claude-conversations.json").read_bytes())
        z.writestr("users.json", "[]")
    files = {"file": ("claude-export.zip", buffer.getvalue(), "application/zip")}
    dry = await client.post("/v1/import?dry_run=true", files=files, headers=auth())
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert dry.json()["summary"] == {"imported": 1, "skipped": 1, "failed": 1, "messages": 5}
    assert (await astore.list_conversations("alice")).data == []
    real = await client.post("/v1/import?format=claude", files=files, headers=auth())
    assert real.json()["summary"]["imported"] == 1
    assert real.json()["conversations"][0]["source"] == "conversations.json"
    openai = {"file": ("conv.jsonl", (DATA / "openai-items.jsonl").read_bytes())}
    r = await client.post("/v1/import", files=openai, headers=auth())
    assert r.json()["format"] == "openai" and r.json()["summary"]["messages"] == 8


async def test_bad_uploads_are_4xx_json(client: httpx.AsyncClient, auth: Auth) -> None:
    assert_error(await client.post("/v1/import", content=CHATGPT), 401, "unauthorized")
    r = await client.post("/v1/import", content=b"\x00\xffgarbage", headers=auth())
    assert_error(r, 400, "validation_error", "format")
    r = await client.post("/v1/import", content=b'{"a": 1}', headers=auth())
    assert_error(r, 400, "validation_error", "format")
    r = await client.post("/v1/import", content=b"PK\x03\x04broken zip", headers=auth())
    assert r.status_code == 400, r.text
    r = await client.post("/v1/import?format=bard", content=CHATGPT, headers=auth())
    assert_error(r, 400, "validation_error", "format")
    r = await client.post("/v1/import?dryrun=1", content=CHATGPT, headers=auth())
    assert_error(r, 400, "validation_error", "dryrun")
    r = await client.post("/v1/import", files={"other": ("x", b"[]")}, headers=auth())
    assert_error(r, 400, "validation_error", "file")
    empty = await client.post("/v1/import", content=b"", headers=auth())
    assert empty.status_code == 200 and empty.json()["summary"]["imported"] == 0
    jsonl = b'{"id": 1, "user_id": "mallory", "messages": []}\n'
    r = await client.post("/v1/import", content=jsonl, headers=auth())
    assert_error(r, 400, "validation_error", "format")


async def test_import_has_its_own_size_limit(
    settings: Settings, astore: AsyncStore, auth: Auth
) -> None:
    # The global JSON limit (64 KiB here) does not apply; the import limit does.
    app = create_app(settings.model_copy(update={"max_import_bytes": 200_000}), store=astore)
    big = b"[" + b" " * 100_000 + CHATGPT[1:]
    async with _client(app) as client:
        r = await client.post("/v1/import", content=big, headers=auth())
        assert r.status_code == 200, r.text
        assert r.json()["summary"]["imported"] == 2
        too_big = b" " * 200_001
        assert_error(
            await client.post("/v1/import", content=too_big, headers=auth()),
            413,
            "payload_too_large",
            "body",
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(30):
                yield b" " * 10_000

        r = await client.post("/v1/import", content=chunks(), headers=auth())
        assert_error(r, 413, "payload_too_large", "body")
        # other routes keep the global limit
        r = await client.post(
            "/v1/conversations",
            content=b" " * 70_000,
            headers=auth() | {"content-type": "application/json"},
        )
        assert_error(r, 413, "payload_too_large", "body")


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_openai_items_need_a_conversation_id(client: httpx.AsyncClient, auth: Auth) -> None:
    items = b'{"type": "message", "id": "m1", "role": "user", "content": "hi"}\n'
    r = await client.post("/v1/import?format=openai", content=items, headers=auth())
    assert r.status_code == 200, r.text
    [result] = r.json()["conversations"]
    assert result["status"] == "failed" and "no conversation id" in result["reason"]
    named = {"file": ("conv_abc.jsonl", items)}
    r = await client.post("/v1/import", files=named, headers=auth())
    assert r.json()["conversations"][0]["external_id"] == "openai:conv_abc"
