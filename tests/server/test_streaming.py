"""Streamed replies over REST and Server-Sent Events.

The endpoints are checked in process (ASGI); following a live stream is checked against a
real ``convostore serve`` with real HTTP clients (httpx + httpx-sse), on both databases.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from convostore import Store
from convostore.server.auth import create_access_token
from tests.realserver import running_server
from tests.server.conftest import SECRET, Auth, assert_error

DELTAS = 500


async def test_a_reply_streams_over_rest(client: httpx.AsyncClient, auth: Auth) -> None:
    h = auth()
    cid = (await client.post("/v1/conversations", json={}, headers=h)).json()["id"]
    base = f"/v1/conversations/{cid}/messages"
    await client.post(base, json={"role": "user", "content": "Hi"}, headers=h)
    begun = await client.post(f"{base}/begin", headers={**h, "Idempotency-Key": "r1"})
    assert begun.status_code == 201, begun.text
    msg = begun.json()
    assert (msg["status"], msg["position"], msg["key"]) == ("streaming", 2, "r1")
    again = await client.post(f"{base}/begin", json={"key": "r1"}, headers=h)
    assert again.json()["id"] == msg["id"]
    assert_error(await client.post(f"{base}/begin", headers=h), 409, "conflict")
    mid = msg["id"]
    for seq, piece in [(0, "Hel"), (1, "lo"), (1, "lo")]:
        r = await client.post(f"{base}/{mid}/deltas", json={"seq": seq, "text": piece}, headers=h)
        assert r.status_code == 200, r.text
    assert r.json() == {"message_id": mid, "seq": 1, "stored": False}
    bad = await client.post(f"{base}/{mid}/deltas", json={"seq": -1, "text": "x"}, headers=h)
    assert_error(bad, 400, "validation_error", "seq")
    clash = await client.post(f"{base}/{mid}/deltas", json={"seq": 1, "text": "LO"}, headers=h)
    assert_error(clash, 409, "conflict")
    chunks = (await client.get(f"{base}/{mid}/chunks", params={"after_seq": 0}, headers=h)).json()
    assert chunks["chunks"] == [{"seq": 1, "text": "lo"}]
    assert chunks["message"]["content"] == "Hello"
    listed = (await client.get(base, headers=h)).json()["data"]
    assert [(m["status"], m["content"]) for m in listed] == [
        ("complete", "Hi"),
        ("streaming", "Hello"),
    ]
    history = (await client.get(f"/v1/conversations/{cid}/history", headers=h)).json()
    assert [m["content"] for m in history["messages"]] == ["Hi"]
    done = await client.post(f"{base}/{mid}/finish", headers=h)
    assert (done.json()["status"], done.json()["content"]) == ("complete", "Hello")
    assert (await client.post(f"{base}/{mid}/finish", headers=h)).json() == done.json()
    other = await client.post(f"{base}/{mid}/finish", json={"content": "Bye"}, headers=h)
    assert_error(other, 409, "conflict")
    # The event stream of an ended reply: the deltas after Last-Event-ID, then its end.
    hdrs = {**h, "Last-Event-ID": "0"}
    async with aconnect_sse(client, "GET", f"{base}/{mid}/stream", headers=hdrs) as source:
        events = [sse async for sse in source.aiter_sse()]
    assert [(e.event, e.id) for e in events] == [("delta", "1"), ("end", "1")]
    assert events[0].json() == {"seq": 1, "text": "lo"}
    assert events[1].json()["content"] == "Hello"


async def test_streaming_endpoints_are_scoped_to_the_user(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    h = auth()
    cid = (await client.post("/v1/conversations", json={}, headers=h)).json()["id"]
    other = (await client.post("/v1/conversations", json={}, headers=h)).json()["id"]
    base = f"/v1/conversations/{cid}/messages"
    mid = (await client.post(f"{base}/begin", headers=h)).json()["id"]
    bob = auth("bob")
    assert_error(await client.post(f"{base}/begin", headers=bob), 404, "not_found")
    for method, path, body in [
        ("POST", f"{base}/{mid}/deltas", {"seq": 0, "text": "x"}),
        ("POST", f"{base}/{mid}/finish", None),
        ("POST", f"{base}/{mid}/fail", None),
        ("POST", f"{base}/{mid}/interrupt", None),
        ("GET", f"{base}/{mid}/chunks", None),
        ("GET", f"{base}/{mid}/stream", None),
    ]:
        r = await client.request(method, path, json=body, headers=bob)
        assert_error(r, 404, "not_found")
        wrong = path.replace(f"/conversations/{cid}/", f"/conversations/{other}/")
        assert_error(await client.request(method, wrong, json=body, headers=h), 404, "not_found")
    bad = await client.get(f"{base}/{mid}/stream", headers={**h, "Last-Event-ID": "x"})
    assert_error(bad, 400, "validation_error", "Last-Event-ID")


async def test_fail_and_interrupt_over_rest(client: httpx.AsyncClient, auth: Auth) -> None:
    h = auth()
    cid = (await client.post("/v1/conversations", json={}, headers=h)).json()["id"]
    base = f"/v1/conversations/{cid}/messages"
    mid = (await client.post(f"{base}/begin", headers=h)).json()["id"]
    await client.post(f"{base}/{mid}/deltas", json={"seq": 0, "text": "half"}, headers=h)
    failed = await client.post(f"{base}/{mid}/fail", json={"metadata": {"e": 1}}, headers=h)
    assert (failed.json()["status"], failed.json()["content"]) == ("error", "half")
    assert_error(await client.post(f"{base}/{mid}/interrupt", headers=h), 409, "conflict")
    history = f"/v1/conversations/{cid}/history"
    assert [m["content"] for m in (await client.get(history, headers=h)).json()["messages"]] == [
        "half"
    ]
    strict = await client.get(history, params={"include_incomplete": "false"}, headers=h)
    assert strict.json()["messages"] == []
    mid2 = (await client.post(f"{base}/begin", headers=h)).json()["id"]
    stopped = await client.post(f"{base}/{mid2}/interrupt", headers=h)
    assert stopped.json()["status"] == "interrupted"
    async with aconnect_sse(
        client, "GET", f"{base}/{mid}/stream", headers={**h, "Last-Event-ID": "0"}
    ) as source:
        events = [(e.event, e.json()) async for e in source.aiter_sse()]
    assert events == [("end", failed.json())]


# ----------------------------------------------------------------- a real server


def _headers(user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(user, secret=SECRET)}"}


async def _follow(
    base: str, path: str, seen: list[int], *, reconnect_after: int | None = None
) -> tuple[str, dict[str, object], int]:
    """Follow a reply over SSE; returns the text joined from the deltas, the end event's
    message and how many connections it took."""
    text, last, connections = "", None, 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while True:
            connections += 1
            headers = _headers()
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            async with aconnect_sse(http, "GET", path, headers=headers) as source:
                source.response.raise_for_status()
                async for sse in source.aiter_sse():
                    if sse.event == "end":
                        return text, sse.json(), connections
                    delta = sse.json()
                    assert int(sse.id) == delta["seq"]
                    assert last is None or delta["seq"] > last
                    text, last = text + delta["text"], delta["seq"]
                    seen.append(delta["seq"])
                    if reconnect_after is not None and len(seen) == reconnect_after:
                        reconnect_after = None
                        break  # drop the connection midway, resume after the last seq


async def test_two_readers_follow_a_500_delta_reply_and_one_reconnects(
    db_url: str, tmp_path: Path
) -> None:
    with running_server(tmp_path, db_url, secret=SECRET) as base:
        async with httpx.AsyncClient(base_url=base, headers=_headers(), timeout=30) as http:
            cid = (await http.post("/v1/conversations", json={})).json()["id"]
            msgs = f"/v1/conversations/{cid}/messages"
            mid = (await http.post(f"{msgs}/begin")).json()["id"]
            seen_a: list[int] = []
            seen_b: list[int] = []
            stream = f"{msgs}/{mid}/stream"
            reader_a = asyncio.create_task(_follow(base, stream, seen_a))
            reader_b = asyncio.create_task(_follow(base, stream, seen_b, reconnect_after=150))
            pieces = [f"w{i} " for i in range(DELTAS)]
            for seq, piece in enumerate(pieces):
                r = await http.post(f"{msgs}/{mid}/deltas", json={"seq": seq, "text": piece})
                assert r.status_code == 200, r.text
                if seq == 9:
                    # Both readers are following live before the rest is written.
                    deadline = time.monotonic() + 30
                    while not (seen_a and seen_b):
                        assert time.monotonic() < deadline, "readers did not start"
                        await asyncio.sleep(0.01)
            final = await http.post(f"{msgs}/{mid}/finish")
            assert final.status_code == 200, final.text
            expected = "".join(pieces)
            (text_a, end_a, conns_a), (text_b, end_b, conns_b) = await asyncio.wait_for(
                asyncio.gather(reader_a, reader_b), 60
            )
    assert text_a == text_b == expected
    assert end_a == end_b == final.json()
    assert end_a["status"] == "complete" and end_a["content"] == expected
    assert (conns_a, conns_b) == (1, 2)
    assert seen_a == seen_b == list(range(DELTAS))  # nothing lost, nothing twice


async def test_a_followed_reply_that_is_deleted_ends_the_stream(
    db_url: str, tmp_path: Path
) -> None:
    """The follower has replayed seq 0 and waits for more (on a real server, so its first
    event is read before the delete is sent); deleting the reply ends its stream."""
    with running_server(tmp_path, db_url, secret=SECRET) as base:
        async with httpx.AsyncClient(base_url=base, headers=_headers(), timeout=30) as http:
            cid = (await http.post("/v1/conversations", json={})).json()["id"]
            msgs = f"/v1/conversations/{cid}/messages"
            mid = (await http.post(f"{msgs}/begin")).json()["id"]
            await http.post(f"{msgs}/{mid}/deltas", json={"seq": 0, "text": "x"})
            async with aconnect_sse(http, "GET", f"{msgs}/{mid}/stream") as source:
                events = source.aiter_sse()
                first = await asyncio.wait_for(anext(events), 30)
                assert (first.event, first.json()) == ("delta", {"seq": 0, "text": "x"})
                deleted = await http.delete(f"{msgs}/last")  # regenerate: the reply goes
                assert deleted.status_code == 200, deleted.text
                rest = [(e.event, e.json()) async for e in events]
    assert rest == [("deleted", {"id": mid})]


WRITER = """
import sys, time
from convostore import Store

url, cid = sys.argv[1], int(sys.argv[2])
with Store(url) as store:
    msg = store.begin_message("alice", cid)
    print(msg.id, flush=True)
    seq = 0
    while True:  # until killed
        store.append_delta("alice", msg.id, seq, f"t{seq} ")
        seq += 1
        time.sleep(0.01)
"""


async def test_a_killed_writer_leaves_an_interrupted_reply(db_url: str, tmp_path: Path) -> None:
    lease = {"CONVOSTORE_STREAM_LEASE_SECONDS": "1"}
    with Store(db_url) as store:
        cid = store.create_conversation("alice").id
        store.append_message("alice", cid, {"role": "user", "content": "Go on"})
    with running_server(tmp_path, db_url, secret=SECRET, env=lease) as base:
        writer = subprocess.Popen(  # noqa: ASYNC220 - started once, then awaited by polling
            [sys.executable, "-c", WRITER, db_url, str(cid)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            mid = int(writer.stdout.readline())
            seen: list[int] = []
            path = f"/v1/conversations/{cid}/messages/{mid}/stream"
            reader = asyncio.create_task(_follow(base, path, seen))
            deadline = time.monotonic() + 30
            while len(seen) < 20:
                assert time.monotonic() < deadline and not reader.done(), "no deltas followed"
                await asyncio.sleep(0.01)
        finally:
            writer.kill()  # SIGKILL: no finally, no fail_message, nothing
            writer.wait()
            if writer.stdout is not None:
                writer.stdout.close()
        started = time.monotonic()
        text, end, _ = await asyncio.wait_for(reader, 30)
        # The follower ended once the lease ran out, not before and not much after.
        assert end["status"] == "interrupted"
        assert time.monotonic() - started < 10
        assert text and end["content"].startswith(text)
        assert end["content"] == "".join(f"t{i} " for i in range(len(end["content"].split())))
        async with httpx.AsyncClient(base_url=base, headers=_headers(), timeout=30) as http:
            msgs = f"/v1/conversations/{cid}/messages"
            listed = (await http.get(msgs)).json()["data"]
            assert [(m["status"], m["content"]) for m in listed] == [
                ("complete", "Go on"),
                ("interrupted", end["content"]),
            ]
            # The conversation takes new messages and a new reply.
            added = await http.post(msgs, json={"role": "user", "content": "Again?"})
            assert added.json()["position"] == 3
            nxt = await http.post(f"{msgs}/begin")
            assert nxt.status_code == 201 and nxt.json()["position"] == 4
            history = (await http.get(f"/v1/conversations/{cid}/history")).json()["messages"]
            assert [m["content"] for m in history] == ["Go on", end["content"], "Again?"]
