"""Streamed replies in the library: begin, deltas, finish/fail/interrupt, leases, readers.

Every test runs on SQLite and PostgreSQL, through the sync and the async store (``api``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from convostore import Store
from convostore.db import make_engine
from convostore.errors import ConflictError, NotFoundError, ValidationError
from tests.conftest import MaybeAsync

ALICE, BOB = "alice", "bob"


def _chunk_rows(db_url: str, message_id: int) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM message_chunks WHERE message_id = :m")
            return int(conn.execute(query, {"m": message_id}).scalar_one())
    finally:
        engine.dispose()


async def test_a_reply_streams_into_its_reserved_position(api: MaybeAsync, db_url: str) -> None:
    conv = await api.create_conversation(ALICE)
    await api.append_message(ALICE, conv.id, {"role": "user", "content": "Tell me"})
    msg = await api.begin_message(ALICE, conv.id)
    assert (msg.position, msg.role, msg.status, msg.content) == (2, "assistant", "streaming", "")
    assert await api.append_delta(ALICE, msg.id, 0, "Once ") is True
    assert await api.append_delta(ALICE, msg.id, 1, "upon") is True
    # Every reader sees the truth: partial content and the status.
    [_, live] = await api.get_messages(ALICE, conv.id)
    assert (live.status, live.content) == ("streaming", "Once upon")
    page = await api.list_messages(ALICE, conv.id, order="desc", limit=1)
    assert page.data[0].status == "streaming"
    read = await api.read_stream(ALICE, msg.id, after_seq=0)
    assert [(c.seq, c.text) for c in read.chunks] == [(1, "upon")] and not read.done
    done = await api.finish_message(ALICE, msg.id)
    assert (done.status, done.content, done.position) == ("complete", "Once upon", 2)
    [_, stored] = await api.get_messages(ALICE, conv.id)
    assert stored == done
    assert _chunk_rows(db_url, msg.id) == 2  # kept for followers that are behind
    final = await api.read_stream(ALICE, msg.id, after_seq=0)
    assert final.done and [c.text for c in final.chunks] == ["upon"]
    assert final.message.content == "Once upon"
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 2


async def test_retried_begin_delta_and_finish_store_nothing_twice(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    first = await api.begin_message(ALICE, conv.id, key="reply-1", metadata={"model": "m"})
    again = await api.begin_message(ALICE, conv.id, key="reply-1", metadata={"model": "m"})
    assert again.id == first.id
    assert await api.append_delta(ALICE, first.id, 0, "Hel") is True
    assert await api.append_delta(ALICE, first.id, 0, "Hel") is False
    assert await api.append_delta(ALICE, first.id, 1, "lo") is True
    # A retried begin after deltas still names the same reply.
    assert (await api.begin_message(ALICE, conv.id, key="reply-1", metadata={"model": "m"})).id == (
        first.id
    )
    with pytest.raises(ConflictError):
        await api.append_delta(ALICE, first.id, 1, "LO")  # same seq, other text
    with pytest.raises(ConflictError):
        await api.begin_message(ALICE, conv.id, key="reply-1", metadata={"model": "other"})
    done = await api.finish_message(ALICE, first.id)
    assert await api.finish_message(ALICE, first.id) == done
    assert await api.finish_message(ALICE, first.id, content="Hello") == done
    with pytest.raises(ConflictError):
        await api.finish_message(ALICE, first.id, content="Something else")
    with pytest.raises(ConflictError):
        await api.append_delta(ALICE, first.id, 2, "!")
    assert (await api.begin_message(ALICE, conv.id, key="reply-1", metadata={"model": "m"})) == done
    messages = await api.get_messages(ALICE, conv.id)
    assert [(m.content, m.status) for m in messages] == [("Hello", "complete")]


async def test_deltas_out_of_order_are_joined_in_seq_order(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    for seq, piece in [(2, "c"), (0, "a"), (5, "f"), (1, "b"), (5, "f"), (3, "d")]:
        await api.append_delta(ALICE, msg.id, seq, piece)
    assert (await api.get_messages(ALICE, conv.id))[0].content == "abcdf"
    read = await api.read_stream(ALICE, msg.id, after_seq=1)
    assert [c.seq for c in read.chunks] == [2, 3, 5]
    assert (await api.finish_message(ALICE, msg.id)).content == "abcdf"


async def test_one_reply_streams_at_a_time_and_appends_come_after_it(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    with pytest.raises(ConflictError, match="already streaming"):
        await api.begin_message(ALICE, conv.id)
    other = await api.create_conversation(ALICE)
    assert (await api.begin_message(ALICE, other.id)).position == 1  # per conversation
    user = await api.append_message(ALICE, conv.id, {"role": "user", "content": "wait"})
    assert user.position == msg.position + 1
    await api.append_delta(ALICE, msg.id, 0, "done")
    await api.finish_message(ALICE, msg.id)
    nxt = await api.begin_message(ALICE, conv.id)
    assert nxt.position == 3
    positions = [m.position for m in await api.get_messages(ALICE, conv.id)]
    assert positions == [1, 2, 3]


async def test_fail_and_interrupt_keep_the_partial_text(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    await api.append_delta(ALICE, msg.id, 0, "partial")
    failed = await api.fail_message(ALICE, msg.id, metadata={"error": "rate limited"})
    assert (failed.status, failed.content, failed.metadata) == (
        "error",
        "partial",
        {"error": "rate limited"},
    )
    assert (await api.fail_message(ALICE, msg.id)).status == "error"  # a retry
    with pytest.raises(ConflictError):
        await api.interrupt_message(ALICE, msg.id)
    with pytest.raises(ConflictError):
        await api.finish_message(ALICE, msg.id)
    read = await api.read_stream(ALICE, msg.id)
    assert read.done and [c.text for c in read.chunks] == ["partial"]  # chunks kept
    second = await api.begin_message(ALICE, conv.id)
    stopped = await api.interrupt_message(ALICE, second.id)
    assert (stopped.status, stopped.content) == ("interrupted", "")
    assert (await api.interrupt_message(ALICE, second.id)).status == "interrupted"


async def test_history_leaves_out_a_streaming_reply(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    await api.append_message(ALICE, conv.id, {"role": "user", "content": "Q1"})
    first = await api.begin_message(ALICE, conv.id)
    await api.append_delta(ALICE, first.id, 0, "half an ans")
    await api.interrupt_message(ALICE, first.id)
    await api.append_message(ALICE, conv.id, {"role": "user", "content": "Q2"})
    live = await api.begin_message(ALICE, conv.id)
    await api.append_delta(ALICE, live.id, 0, "still typing")
    history = await api.get_history(ALICE, conv.id)
    assert [m["content"] for m in history] == ["Q1", "half an ans", "Q2"]
    strict = await api.get_history(ALICE, conv.id, include_incomplete=False)
    assert [m["content"] for m in strict] == ["Q1", "Q2"]
    with pytest.raises(ValidationError, match="include_incomplete"):
        await api.get_history(ALICE, conv.id, include_incomplete="no")
    await api.finish_message(ALICE, live.id)
    history = await api.get_history(ALICE, conv.id, max_messages=1)
    assert history == [{"role": "assistant", "content": "still typing"}]


async def test_streamed_replies_are_isolated_per_user(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    other = await api.create_conversation(ALICE)
    with pytest.raises(NotFoundError):
        await api.begin_message(BOB, conv.id)
    for call in (
        api.append_delta(BOB, msg.id, 0, "x"),
        api.finish_message(BOB, msg.id),
        api.fail_message(BOB, msg.id),
        api.interrupt_message(BOB, msg.id),
        api.read_stream(BOB, msg.id),
        api.append_delta(ALICE, msg.id, 0, "x", conversation_id=other.id),
        api.read_stream(ALICE, 2**62),
        api.read_stream(ALICE, 2**64),
    ):
        with pytest.raises(NotFoundError):
            await call
    assert (await api.read_stream(ALICE, msg.id, conversation_id=conv.id)).message.id == msg.id


@pytest.mark.parametrize(
    ("seq", "piece", "field"),
    [(-1, "x", "seq"), (True, "x", "seq"), (2**31, "x", "seq"), ("1", "x", "seq"),
     (0, "", "text"), (0, None, "text"), (0, "a\x00b", "text"), (0, "\ud800", "text")],
)  # fmt: skip
async def test_bad_deltas_are_refused(
    api: MaybeAsync, seq: object, piece: object, field: str
) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    with pytest.raises(ValidationError) as err:
        await api.append_delta(ALICE, msg.id, seq, piece)
    assert err.value.field == field


async def test_begin_is_validated(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    for kwargs, field in [
        ({"role": "tool"}, "role"),
        ({"role": 3}, "role"),
        ({"metadata": [1]}, "metadata"),
        ({"key": ""}, "key"),
    ]:
        with pytest.raises(ValidationError) as err:
            await api.begin_message(ALICE, conv.id, **kwargs)
        assert err.value.field == field
    with pytest.raises(ValidationError, match="after_seq"):
        await api.read_stream(ALICE, 1, after_seq=-2)


async def test_streamed_content_is_bounded_by_max_content_length(db_url: str) -> None:
    with Store(db_url, max_content_length=10) as store:
        conv = store.create_conversation(ALICE)
        msg = store.begin_message(ALICE, conv.id)
        store.append_delta(ALICE, msg.id, 0, "123456")
        with pytest.raises(ValidationError, match="exceed 10"):
            store.append_delta(ALICE, msg.id, 1, "12345")
        store.append_delta(ALICE, msg.id, 1, "1234")
        assert store.read_stream(ALICE, msg.id).message.content == "1234561234"
        with pytest.raises(ValidationError, match="content"):
            store.finish_message(ALICE, msg.id, content="x" * 11)


async def test_an_empty_reply_cannot_be_finished_without_tool_calls(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    with pytest.raises(ValidationError, match="content"):
        await api.finish_message(ALICE, msg.id)
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    done = await api.finish_message(ALICE, msg.id, tool_calls=calls)
    assert (done.status, done.tool_calls) == ("complete", calls)


async def test_removing_a_streaming_reply_removes_its_chunks(api: MaybeAsync, db_url: str) -> None:
    conv = await api.create_conversation(ALICE)
    msg = await api.begin_message(ALICE, conv.id)
    await api.append_delta(ALICE, msg.id, 0, "abc")
    popped = await api.pop_message(ALICE, conv.id)
    assert popped is not None and (popped.status, popped.content) == ("streaming", "abc")
    assert _chunk_rows(db_url, msg.id) == 0
    with pytest.raises(NotFoundError):
        await api.append_delta(ALICE, msg.id, 1, "d")
    assert (await api.begin_message(ALICE, conv.id)).position == 1


def test_a_reply_whose_writer_went_quiet_reads_as_interrupted(db_url: str) -> None:
    # The lease runs on the store's clock (heartbeats and the cutoff alike), so the test
    # moves that clock instead of sleeping: a slow machine cannot let the lease lapse
    # between two calls, and the writer goes quiet exactly when the test says.
    now = [datetime.now(UTC)]

    def clock() -> datetime:
        return now[0]

    with Store(db_url, stream_lease_seconds=60, clock=clock) as store:
        conv = store.create_conversation(ALICE)
        msg = store.begin_message(ALICE, conv.id)
        now[0] += timedelta(seconds=59)
        store.append_delta(ALICE, msg.id, 0, "so far")  # renews the lease
        now[0] += timedelta(seconds=59)
        assert store.read_stream(ALICE, msg.id).message.status == "streaming"
        assert store.get_messages(ALICE, conv.id)[0].status == "streaming"
        now[0] += timedelta(seconds=2)  # 61 s since the last delta
        [stale] = store.get_messages(ALICE, conv.id)
        assert (stale.status, stale.content) == ("interrupted", "so far")
        assert store.read_stream(ALICE, msg.id).done
        with pytest.raises(ConflictError, match="interrupted"):
            store.append_delta(ALICE, msg.id, 1, " late")
        with pytest.raises(ConflictError):
            store.finish_message(ALICE, msg.id)
        # The conversation takes new replies: the stale one is marked interrupted first.
        nxt = store.begin_message(ALICE, conv.id)
        assert nxt.position == 2
        with Store(db_url, stream_lease_seconds=3600, clock=clock) as patient:
            # Stored as interrupted now, whatever lease a reader uses.
            assert patient.get_messages(ALICE, conv.id)[0].status == "interrupted"
            assert patient.get_messages(ALICE, conv.id)[1].status == "streaming"


def test_concurrent_appends_while_streaming_keep_positions_gapless(db_url: str) -> None:
    with Store(db_url) as store:
        conv = store.create_conversation(ALICE)
        errors: list[BaseException] = []

        def appender(tag: int) -> None:
            try:
                for i in range(15):
                    store.append_message(ALICE, conv.id, {"role": "user", "content": f"{tag}.{i}"})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def streamer() -> None:
            try:
                for _ in range(5):
                    msg = store.begin_message(ALICE, conv.id)
                    for seq in range(10):
                        store.append_delta(ALICE, msg.id, seq, f"{seq} ")
                    store.finish_message(ALICE, msg.id)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=appender, args=(t,)) for t in range(3)]
        threads.append(threading.Thread(target=streamer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        messages = store.get_messages(ALICE, conv.id)
        assert [m.position for m in messages] == list(range(1, 51))
        replies = [m for m in messages if m.role == "assistant"]
        expected = "".join(f"{s} " for s in range(10))
        assert [(m.status, m.content) for m in replies] == [("complete", expected)] * 5


@pytest.fixture
def sqlite_store(
    sqlite_template: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("prop") / "p.db"
    path.write_bytes(sqlite_template.read_bytes())  # type: ignore[attr-defined]
    with Store(f"sqlite:///{path}") as store:
        yield store


pieces = st.lists(
    st.text(min_size=1, max_size=5).filter(lambda s: "\x00" not in s and s.isprintable()),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=pieces, data=st.data())
def test_retried_and_reordered_deltas_assemble_in_seq_order(
    sqlite_store: Store, texts: list[str], data: st.DataObject
) -> None:
    # The writer's deltas (seq i carries texts[i]) arrive in any order, some of them twice.
    sends = list(enumerate(texts))
    sends += data.draw(st.lists(st.sampled_from(sends), max_size=len(sends)), label="retries")
    order = data.draw(st.permutations(sends), label="arrival")
    conv = sqlite_store.create_conversation(ALICE)
    msg = sqlite_store.begin_message(ALICE, conv.id)
    stored = [sqlite_store.append_delta(ALICE, msg.id, seq, piece) for seq, piece in order]
    assert sum(stored) == len(texts)  # each delta stored exactly once
    assert sqlite_store.read_stream(ALICE, msg.id).message.content == "".join(texts)
    assert sqlite_store.finish_message(ALICE, msg.id).content == "".join(texts)
