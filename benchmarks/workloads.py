"""The six workloads (W1..W6): timing, interleaving and the correctness checks.

Subjects are measured in interleaved rounds (the order shuffled every round), so that the
noise of a shared 2-core machine falls on all of them alike and the ratios stay meaningful.
Every timed read is checked right after the clock stops; every write is read back and
checked once the workload is over (count, content, order, gapless positions, counter).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import random
import threading
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter_ns
from typing import Any

from benchmarks.data import Database, ReadSet, build_read_set, messages_of, text_of
from benchmarks.subjects import HISTORY_TOKENS, Subject

WORKLOADS: dict[str, str] = {
    "W1": "append one message",
    "W2": "append a batch",
    "W3": "read a conversation",
    "W4": "read the last n",
    "W5": "list recent conversations",
    "W6": "concurrent appends",
    "W7": "the model's history window",
    "W8": "concurrent appends, one conversation each",
}


class CheckError(AssertionError):
    """A subject returned a wrong answer (or lost/duplicated a write)."""


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run."""

    w1_appends: int = 500
    w2_batch: int = 1000
    w2_reps: int = 15
    w3_messages: int = 1000
    w3_reps: int = 100
    w4_messages: int = 20_000
    w4_tail: int = 20
    w4_reps: int = 1000
    w5_conversations: int = 2000
    w5_other_users: int = 10
    w5_page: int = 20
    w5_reps: int = 1000
    w6_writers: int = 8
    w6_per_writer: int = 100
    w6_reps: int = 7
    w7_reps: int = 300
    noise_conversations: int = 20
    noise_messages: int = 1000
    rounds: int = 10
    warmup: int = 20
    #: Seconds one subject may spend on one workload (a slow alternative gets fewer samples).
    budget_s: float = 20.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            w1_appends=200,
            w2_reps=6,
            w3_reps=20,
            w4_reps=100,
            w5_reps=100,
            w6_reps=2,
            w7_reps=60,
            noise_conversations=5,
            rounds=5,
            warmup=10,
            budget_s=6.0,
        )

    @classmethod
    def tiny(cls) -> Plan:
        """For the smoke tests: every code path, a few operations each."""
        return cls(
            w1_appends=5,
            w2_batch=5,
            w2_reps=2,
            w3_messages=5,
            w3_reps=2,
            w4_messages=30,
            w4_tail=5,
            w4_reps=2,
            w5_conversations=7,
            w5_other_users=2,
            w5_page=5,
            w5_reps=2,
            w6_writers=3,
            w6_per_writer=5,
            w6_reps=1,
            w7_reps=2,
            noise_conversations=2,
            noise_messages=5,
            rounds=2,
            warmup=1,
        )

    def read_set(self, db: Database) -> ReadSet:
        """Bulk-load the data the read workloads (W3, W4, W5) run on, sized by this plan."""
        return build_read_set(
            db,
            n_read=self.w3_messages,
            n_tail=self.w4_messages,
            noise_conversations=self.noise_conversations,
            noise_messages=self.noise_messages,
            n_list=self.w5_conversations,
            other_users=self.w5_other_users,
            n_history=self.w3_messages,
        )


@dataclass
class Measurement:
    """What one subject did on one workload."""

    workload: str
    backend: str
    subject: str
    samples_ns: list[int] = field(default_factory=list)
    #: Messages per operation (W2: the batch) or per timed run (W6: all writers).
    items: int = 1
    error: str | None = None
    note: str = ""


async def call(subject: Subject, op: Callable[[], Any]) -> Any:
    """Call ``op`` and await its result if the subject is async (not timed)."""
    result = op()
    return await result if inspect.isawaitable(result) else result


async def _timed(subject: Subject, op: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``op`` once; the clock covers the call and, for async subjects, the await."""
    if subject.is_async:
        start = perf_counter_ns()
        result = await op()
        return perf_counter_ns() - start, result
    start = perf_counter_ns()
    result = op()
    return perf_counter_ns() - start, result


Op = Callable[[], Any]
Check = Callable[[Any], None]


async def interleaved(
    subjects: list[Subject],
    ops: dict[str, tuple[Op, Check]],
    *,
    total: int,
    plan: Plan,
    workload: str,
    backend: str,
    seed: int,
) -> dict[str, Measurement]:
    """Time ``total`` calls of each subject's op in shuffled rounds, checking every answer."""
    results = {s.name: Measurement(workload, backend, s.name, note=s.note) for s in subjects}
    live = [s for s in subjects if s.name in ops]
    _settle_gc()
    for s in live:  # warm-up: connections, prepared statements, caches
        op, check = ops[s.name]
        try:
            for _ in range(plan.warmup):
                check(await call(s, op))
        except Exception as exc:
            results[s.name].error = _describe(exc)
    live = [s for s in live if results[s.name].error is None]
    rng = random.Random(seed)
    rounds = max(1, min(plan.rounds, total))
    round_budget_ns = plan.budget_s * 1e9 / rounds
    for r in range(rounds):
        per_round = total // rounds + (1 if r < total % rounds else 0)
        rng.shuffle(live)
        for s in list(live):
            op, check = ops[s.name]
            gc.collect()
            spent = 0
            try:
                for _ in range(per_round):
                    elapsed, result = await _timed(s, op)
                    check(result)
                    results[s.name].samples_ns.append(elapsed)
                    spent += elapsed
                    if spent > round_budget_ns:
                        break
            except Exception as exc:
                results[s.name].error = _describe(exc)
                live.remove(s)
    gc.unfreeze()
    return results


def _settle_gc() -> None:
    """Collect once, then move every surviving object out of the collector's sight, so
    that the per-round collections are cheap and no full collection lands in a timing."""
    gc.collect()
    gc.freeze()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CheckError):
        return f"WRONG ANSWER: {exc}"
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"


def expect(actual: list[Any], expected: list[Any], what: str) -> None:
    """Raise :class:`CheckError` unless the lists are equal (count, content, order)."""
    if actual != expected:
        if len(actual) != len(expected):
            raise CheckError(f"{what}: {len(actual)} items, expected {len(expected)}")
        first = next(i for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e)
        raise CheckError(
            f"{what}: item {first} is {actual[first]!r:.40}, expected {expected[first]!r:.40}"
        )


def verify_conversation(db: Database, conversation_id: int, expected: list[str]) -> None:
    """Check a written conversation on the raw connection: contents in order, positions
    gapless from 1, and the counter moved with them."""
    conn = db.raw()
    try:
        p = "%s" if db.backend == "postgresql" else "?"
        rows = conn.execute(
            f"SELECT position, content FROM messages WHERE conversation_id = {p} ORDER BY position",
            (conversation_id,),
        ).fetchall()
        count = conn.execute(
            f"SELECT message_count FROM conversations WHERE id = {p}", (conversation_id,)
        ).fetchone()
    finally:
        conn.close()
    expect([r[1] for r in rows], expected, f"conversation {conversation_id} contents")
    expect([r[0] for r in rows], list(range(1, len(expected) + 1)), "positions")
    if count is None or count[0] != len(expected):
        raise CheckError(f"message_count is {count and count[0]}, expected {len(expected)}")


async def verify_written(subject: Subject, user: str, conv: Any, expected: list[str]) -> None:
    """Read a written conversation back through the subject (and the raw connection)."""
    expect(
        subject.texts(await call(subject, lambda: subject.read_all(user, conv))),
        expected,
        "read back",
    )
    if subject.shares_schema and subject.keeps_counter:
        verify_conversation(subject.db, conv, expected)


# ------------------------------------------------------------------------ workloads


async def w1_append_one(
    subjects: list[Subject], plan: Plan, backend: str
) -> dict[str, Measurement]:
    """W1: append one message at a time (per-append latency)."""
    user = "bench-w1"
    n = plan.warmup + plan.w1_appends
    expected = {
        s.name: [text_of(f"w1-{k}", i) for i in range(1, n + 1)] for k, s in enumerate(subjects)
    }
    ops: dict[str, tuple[Op, Check]] = {}
    convs: dict[str, Any] = {}
    for k, s in enumerate(subjects):
        convs[s.name] = conv = await call(s, partial(s.create_conversation, user, "w1"))
        inputs = iter([s.prepare_one(r, c) for r, c in messages_of(f"w1-{k}", 1, n + 1)])
        ops[s.name] = (_feeder(s.append, user, [conv] * n, inputs), _no_check)
    out = await interleaved(
        subjects, ops, total=plan.w1_appends, plan=plan, workload="W1", backend=backend, seed=1
    )
    for s in subjects:
        await _verify(out[s.name], s, user, convs[s.name], expected[s.name])
    return out


async def w2_append_batch(
    subjects: list[Subject], plan: Plan, backend: str
) -> dict[str, Measurement]:
    """W2: append a batch of ``w2_batch`` messages (per-batch latency)."""
    user = "bench-w2"
    batch = messages_of("w2", 1, plan.w2_batch + 1)
    expected = [c for _, c in batch]
    ops: dict[str, tuple[Op, Check]] = {}
    convs: dict[str, list[Any]] = {}
    small = Plan(**{**plan.__dict__, "warmup": min(plan.warmup, 3)})
    for s in subjects:
        convs[s.name] = [
            await call(s, partial(s.create_conversation, user, "w2"))
            for _ in range(small.warmup + plan.w2_reps)
        ]
        prepared = s.prepare_batch(batch)
        count = len(convs[s.name])
        ops[s.name] = (
            _feeder(s.append_batch, user, convs[s.name], iter([prepared] * count)),
            _no_check,
        )
    out = await interleaved(
        subjects, ops, total=plan.w2_reps, plan=small, workload="W2", backend=backend, seed=2
    )
    for s in subjects:
        out[s.name].items = plan.w2_batch
        # The first and the last timed batch: read back in full.
        await _verify(out[s.name], s, user, convs[s.name][small.warmup], expected)
        await _verify(out[s.name], s, user, convs[s.name][-1], expected)
    return out


async def _verify(m: Measurement, s: Subject, user: str, conv: Any, expected: list[str]) -> None:
    if m.error is not None:
        return
    try:
        await verify_written(s, user, conv, expected)
    except Exception as exc:
        m.error = _describe(exc)


def _feeder(fn: Callable[[str, Any, Any], Any], user: str, convs: list[Any], items: Any) -> Op:
    """An op that calls ``fn(user, next conversation, next item)`` (W1/W2 inputs)."""
    targets = iter(convs)

    def op() -> Any:
        return fn(user, next(targets), next(items))

    return op


def check_texts(s: Subject, expected: list[str], what: str, result: Any) -> None:
    """A read returned exactly ``expected`` message contents, in order."""
    expect(s.texts(result), expected, what)


def check_titles(s: Subject, expected: list[str], what: str, result: Any) -> None:
    """A listing returned exactly ``expected`` conversation titles, in order."""
    expect(s.titles(result), expected, what)


def check_equal(expected: Any, what: str, result: Any) -> None:
    """A read returned exactly ``expected`` (W7: the same chat dicts, in order)."""
    expect(list(result), expected, what)


async def _expected_window(subjects: list[Subject], rs: ReadSet) -> list[Any] | None:
    """W7's answer, from the raw baseline: the chat dicts a hand-written endpoint builds.

    It must be a real window: non-empty, ending with the conversation's last message,
    holding tool calls with their results.
    """
    raw = next((s for s in subjects if s.name.startswith("raw")), None)
    if raw is None or not rs.n_history:
        return None
    window = list(await call(raw, lambda: raw.history(rs.reader, rs.conv_history, HISTORY_TOKENS)))
    if not window or window[-1]["content"] != text_of("h", rs.n_history):
        raise CheckError("W7: the raw baseline's window does not end on the last message")
    if len(window) >= 4 and not any("tool_calls" in m for m in window):
        raise CheckError("W7: the raw baseline's window holds no tool call")
    return window


def _no_check(result: Any) -> None:
    """Writes are checked by reading them back after the workload."""


async def seed_alternative(subject: Subject, rs: ReadSet, plan: Plan) -> dict[str, Any]:
    """Give an alternative (own tables) the same W3/W4 data through its own API."""
    user = rs.reader
    handles: dict[str, Any] = {}
    for key, conv_id, n in (("read", rs.conv_read, rs.n_read), ("tail", rs.conv_tail, rs.n_tail)):
        handle = await call(subject, partial(subject.create_conversation, user, key))
        for start in range(1, n + 1, 1000):
            chunk = messages_of(f"c{conv_id}", start, min(n, start + 999) + 1)
            batch = subject.prepare_batch(chunk)
            await call(subject, partial(subject.append_batch, user, handle, batch))
        handles[key] = handle
    for k in range(plan.noise_conversations):  # other conversations written after
        handle = await call(subject, partial(subject.create_conversation, "bench-noise", "n"))
        batch = subject.prepare_batch(messages_of(f"noise{k}", 1, plan.noise_messages + 1))
        await call(subject, partial(subject.append_batch, "bench-noise", handle, batch))
    return handles


async def read_workloads(
    subjects: list[Subject], rs: ReadSet, plan: Plan, backend: str
) -> dict[str, dict[str, Measurement]]:
    """W3 (read all), W4 (read the last n), W5 (list recent conversations)."""
    handles: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for s in subjects:
        if s.shares_schema:
            handles[s.name] = {"read": rs.conv_read, "tail": rs.conv_tail}
            continue
        try:
            handles[s.name] = await seed_alternative(s, rs, plan)
        except Exception as exc:
            errors[s.name] = f"seeding failed: {_describe(exc)}"
    every = rs.expected_all()
    tail = rs.expected_tail(plan.w4_tail)
    top = rs.expected_top(plan.w5_page)
    window = await _expected_window(subjects, rs)

    def ops_for(workload: str) -> dict[str, tuple[Op, Check]]:
        ops: dict[str, tuple[Op, Check]] = {}
        for s in subjects:
            if workload not in s.supports or s.name not in handles:
                continue
            h = handles[s.name]
            if workload == "W3":
                ops[s.name] = (
                    partial(s.read_all, rs.reader, h["read"]),
                    partial(check_texts, s, every, "W3"),
                )
            elif workload == "W7":
                if not s.shares_schema or window is None:
                    continue
                ops[s.name] = (
                    partial(s.history, rs.reader, rs.conv_history, HISTORY_TOKENS),
                    partial(check_equal, window, "W7"),
                )
            elif workload == "W4":
                ops[s.name] = (
                    partial(s.read_last, rs.reader, h["tail"], plan.w4_tail),
                    partial(check_texts, s, tail, "W4"),
                )
            else:
                ops[s.name] = (
                    partial(s.list_recent, rs.lister, plan.w5_page),
                    partial(check_titles, s, top, "W5"),
                )
        return ops

    reps = {"W3": plan.w3_reps, "W4": plan.w4_reps, "W5": plan.w5_reps, "W7": plan.w7_reps}
    out: dict[str, dict[str, Measurement]] = {}
    for seed, workload in enumerate(("W3", "W4", "W5", "W7"), start=3):
        ops = ops_for(workload)
        runnable = [s for s in subjects if s.name in ops]
        res = await interleaved(
            runnable,
            ops,
            total=reps[workload],
            plan=plan,
            workload=workload,
            backend=backend,
            seed=seed,
        )
        for name, msg in errors.items():
            res[name] = Measurement(workload, backend, name, error=msg)
        out[workload] = res
    for m in out["W3"].values():
        m.items = rs.n_read
    return out


async def w6_concurrent(
    subjects: list[Subject], plan: Plan, backend: str
) -> dict[str, Measurement]:
    """W6: ``w6_writers`` concurrent writers x ``w6_per_writer`` appends into one
    conversation; the time of the whole run (throughput = messages / time)."""
    return await _concurrent(subjects, plan, backend, "W6", shared=True)


async def w8_concurrent_many(
    subjects: list[Subject], plan: Plan, backend: str
) -> dict[str, Measurement]:
    """W8: as W6, but each writer appends into its own conversation (the common case)."""
    return await _concurrent(subjects, plan, backend, "W8", shared=False)


async def _concurrent(
    subjects: list[Subject], plan: Plan, backend: str, workload: str, *, shared: bool
) -> dict[str, Measurement]:
    user = f"bench-{workload.lower()}"
    k, per = plan.w6_writers, plan.w6_per_writer
    out: dict[str, Measurement] = {}
    runnable = [s for s in subjects if workload in s.supports]
    for s in runnable:
        out[s.name] = Measurement(workload, backend, s.name, items=k * per, note=s.note)
    order = list(runnable)
    rng = random.Random(int(workload[1:]))
    for rep in range(plan.w6_reps + 1):  # the first repetition is a warm-up
        rng.shuffle(order)
        for s in order:
            m = out[s.name]
            if m.error is not None:
                continue
            try:
                elapsed = await _w6_once(s, user, k, per, f"r{rep}", shared=shared)
            except Exception as exc:
                m.error = _describe(exc)
                continue
            if rep:
                m.samples_ns.append(elapsed)
    return out


async def _w6_once(
    s: Subject, user: str, k: int, per: int, tag: str, *, shared: bool = True
) -> int:
    """One timed run of ``k`` writers: into one conversation (W6) or one each (W8)."""
    if shared:
        convs = [await call(s, lambda: s.create_conversation(user, "w6"))] * k
    else:
        convs = [await call(s, lambda: s.create_conversation(user, "w8")) for _ in range(k)]
    inputs = [
        [s.prepare_one("user", text_of(f"{tag}w{j}", i)) for i in range(1, per + 1)]
        for j in range(k)
    ]
    writers = s.writers(k)
    try:
        _settle_gc()
        if s.is_async:
            elapsed = await _run_tasks(writers, user, convs, inputs)
        else:
            elapsed = _run_threads(writers, user, convs, inputs)
    finally:
        gc.unfreeze()
        s.release_writers()
    if not shared:
        for j, conv in enumerate(convs):
            expected = [text_of(f"{tag}w{j}", i) for i in range(1, per + 1)]
            await verify_written(s, user, conv, expected)
        return elapsed
    # Nothing lost, nothing duplicated, every writer's messages in its own order.
    conv = convs[0]
    stored = s.texts(await call(s, lambda: s.read_all(user, conv)))
    if len(stored) != k * per or len(set(stored)) != k * per:
        raise CheckError(
            f"W6: {len(stored)} stored ({len(set(stored))} distinct), expected {k * per}"
        )
    for j in range(k):
        mine = [t for t in stored if t.startswith(f"{tag}w{j}#")]
        expect(mine, [text_of(f"{tag}w{j}", i) for i in range(1, per + 1)], f"W6 writer {j}")
    if s.shares_schema:
        verify_conversation(s.db, conv, stored)
    return elapsed


async def _run_tasks(
    writers: list[Any], user: str, convs: list[Any], inputs: list[list[Any]]
) -> int:
    async def worker(write: Callable[..., Awaitable[Any]], conv: Any, items: list[Any]) -> None:
        for item in items:
            await write(user, conv, item)

    start = perf_counter_ns()
    await asyncio.gather(
        *(worker(w, c, items) for w, c, items in zip(writers, convs, inputs, strict=True))
    )
    return perf_counter_ns() - start


def _run_threads(writers: list[Any], user: str, convs: list[Any], inputs: list[list[Any]]) -> int:
    barrier = threading.Barrier(len(writers) + 1)
    failures: list[BaseException] = []

    def worker(write: Callable[..., Any], conv: Any, items: list[Any]) -> None:
        barrier.wait()
        try:
            for item in items:
                write(user, conv, item)
        except BaseException as exc:  # reported to the main thread below
            failures.append(exc)

    threads = [
        threading.Thread(target=worker, args=(w, c, items))
        for w, c, items in zip(writers, convs, inputs, strict=True)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    start = perf_counter_ns()
    for t in threads:
        t.join()
    elapsed = perf_counter_ns() - start
    if failures:
        raise failures[0]
    return elapsed
