"""``python -m benchmarks --breakdown``: where the time of one call goes.

For a short read (W4: the last 20 of 2,000 messages; W5: the 20 most recent of a user's
100 conversations) each rung below adds one layer to the rung before it:

1. **raw SQL**: the baseline's hand-written statement on its own driver connection;
2. **convostore's SQL**: the statement and parameters convostore sends (captured from a
   store's ``before_cursor_execute`` event), on a driver connection of its own;
3. **+ pooled connection**: the same, on a connection checked out of the store's engine
   and returned for every call (with the autocommit switch the store makes on PostgreSQL);
4. **Store**: the public call, which adds the operation itself: validation, parameters,
   rows to models, the runner;
5. **AsyncStore**: the same call awaited; on PostgreSQL next to **raw async SQL**, the
   baseline's statement on psycopg's ``AsyncConnection``, the driver's own price of asyncio.

W1 (one append) is timed raw and through both stores only. Every rung runs in the same
interleaved rounds (order shuffled each round, the heap frozen); the figures are the
median of the rounds' medians (wall clock) and the CPU time of this process per call
(``time.process_time``: the client's work, not the server's). Every answer is checked.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import event

from benchmarks.data import Backend, Database, fresh_databases
from benchmarks.report import print_and_write
from benchmarks.subjects import SELECT_LAST, SELECT_RECENT, RawPostgres, RawSqlite
from benchmarks.workloads import CheckError
from convostore import AsyncStore, Store

USER = "bench-breakdown"
MESSAGES = 2_000
CONVERSATIONS = 100
N = 20


@dataclass(frozen=True, slots=True)
class Rung:
    backend: str
    workload: str
    name: str
    wall_us: float
    cpu_us: float


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of one workload: a call, whether it is awaited, and its answer's check."""

    name: str
    call: Callable[[], Any]
    check: Callable[[Any], bool]
    is_async: bool = False


def _captured(store: Store, call: Callable[[], Any]) -> tuple[str, Any]:
    """The statement ``call`` sends (SQL and DB-API parameters), as the engine's events
    see it."""
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    # SQLite: an observed read is wrapped in a deferred BEGIN (SQLAlchemy's autobegin),
    # which the fast path does not send; the statement is the same.
    statements = [s for s in seen if s[0] != "BEGIN"]
    if len(statements) != 1:
        raise CheckError(f"expected one statement, the call sent {seen}")
    return statements[0]


def _pooled(store: Store, pg: bool, sql: str, params: Any) -> Callable[[], Any]:
    """``sql`` on a connection of the store's pool, checked out and returned per call."""

    def call() -> Any:
        with store.engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            if pg:
                dbapi.autocommit = True
            try:
                cursor = dbapi.cursor()
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                cursor.close()
                return rows
            finally:
                if pg:
                    dbapi.autocommit = False

    return call


async def _measure(steps: list[Step], rounds: int, calls: int) -> dict[str, tuple[float, float]]:
    """``{rung: (median wall us, median CPU us)}`` over interleaved, shuffled rounds."""
    for step in steps:  # warm-up: connections, prepared statements, caches
        for _ in range(max(5, calls // 5)):
            result = step.call()
            if step.is_async:
                await result
    gc.collect()
    gc.freeze()
    walls: dict[str, list[float]] = {s.name: [] for s in steps}
    cpus: dict[str, list[float]] = {s.name: [] for s in steps}
    try:
        for _ in range(rounds):
            order = steps[:]
            random.shuffle(order)
            for step in order:
                times, result = [], None
                cpu = time.process_time()
                for _ in range(calls):
                    start = time.perf_counter_ns()
                    result = step.call()
                    if step.is_async:
                        result = await result
                    times.append(time.perf_counter_ns() - start)
                cpus[step.name].append((time.process_time() - cpu) / calls * 1e6)
                if not step.check(result):
                    raise CheckError(f"{step.name}: wrong answer {str(result)[:80]}")
                walls[step.name].append(statistics.median(times) / 1000)
    finally:
        gc.unfreeze()
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in walls}


async def run_breakdown(db: Database, *, rounds: int, calls: int) -> list[Rung]:
    """Load a small data set into ``db`` and time every rung of W4, W5 and W1."""
    pg = db.backend == "postgresql"
    raw = RawPostgres(db) if pg else RawSqlite(db)
    await raw.open()
    store = Store(db.url)
    astore = AsyncStore(db.url)
    own = db.raw()  # for convostore's SQL, outside any pool
    araw: psycopg.AsyncConnection[Any] | None = None
    try:
        cid = store.create_conversation(USER, title="breakdown").id
        batch = [{"role": "user", "content": f"message {i}"} for i in range(1000)]
        for _ in range(MESSAGES // 1000):
            store.append_messages(USER, cid, batch)
        for i in range(CONVERSATIONS):
            store.create_conversation(USER, title=f"conversation {i}")
        if pg:
            araw = await psycopg.AsyncConnection.connect(db.libpq_url, autocommit=True)
        p = "%s" if pg else "?"
        reads: dict[str, tuple[Callable[[], Any], Callable[[], Any], str, tuple[Any, ...]]] = {
            "W4": (
                lambda: store.last_messages(USER, cid, N),
                lambda: astore.last_messages(USER, cid, N),
                SELECT_LAST.format(p=p),
                (cid, USER, N),
            ),
            "W5": (
                lambda: store.list_conversations(USER, limit=N),
                lambda: astore.list_conversations(USER, limit=N),
                SELECT_RECENT.format(p=p),
                (USER, N + 1),
            ),
        }
        rungs: list[Rung] = []
        for workload, (sync_call, async_call, raw_sql, raw_params) in reads.items():
            sql, params = _captured(store, sync_call)
            count = _rows(N + 1 if workload == "W5" else N)  # W5's SQL fetches one more
            steps = [
                Step(
                    "raw SQL", lambda s=raw_sql, a=raw_params: own.execute(s, a).fetchall(), count
                ),
                Step(
                    "convostore's SQL", lambda s=sql, a=params: own.execute(s, a).fetchall(), count
                ),
                Step("+ pooled connection", _pooled(store, pg, sql, params), count),
                Step("Store", sync_call, _page),
                Step("AsyncStore", async_call, _page, is_async=True),
            ]
            if araw is not None:
                steps.append(
                    Step("raw async SQL", _async_read(araw, raw_sql, raw_params), count, True)
                )
            rungs += _rungs(db.backend, workload, steps, await _measure(steps, rounds, calls))
        message = {"role": "user", "content": "one more message"}
        written = store.create_conversation(USER, title="appends").id
        steps = [
            Step("raw SQL", lambda: raw.append(USER, written, ("user", "raw")), _some),
            Step("Store", lambda: store.append_message(USER, written, message), _some),
            Step(
                "AsyncStore",
                lambda: astore.append_message(USER, written, message),
                _some,
                is_async=True,
            ),
        ]
        rungs += _rungs(db.backend, "W1", steps, await _measure(steps, rounds, calls))
        positions = [m.position for m in store.get_messages(USER, written)]
        if positions != list(range(1, len(positions) + 1)):
            raise CheckError("W1: positions are not gapless after the appends")
        return rungs
    finally:
        if araw is not None:
            await araw.close()
        own.close()
        await astore.aclose()
        store.close()
        await raw.close()


def _some(result: Any) -> bool:
    return result is not None


def _page(result: Any) -> bool:
    """A store's answer: ``N`` messages, or a page of ``N`` conversations."""
    return len(getattr(result, "data", result)) == N


def _rows(n: int) -> Callable[[Any], bool]:
    return lambda rows: len(rows) == n


def _async_read(conn: psycopg.AsyncConnection[Any], sql: str, params: Any) -> Callable[[], Any]:
    async def call() -> Any:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()

    return call


def _rungs(
    backend: str, workload: str, steps: list[Step], figures: dict[str, tuple[float, float]]
) -> list[Rung]:
    return [Rung(backend, workload, s.name, *figures[s.name]) for s in steps]


#: Rungs compared with another than the one before them.
_COMPARED_WITH = {"AsyncStore": "Store", "raw async SQL": "raw SQL"}


def markdown(rungs: list[Rung]) -> str:
    """The table: each rung's median, what it adds to the rung before, its CPU per call."""
    lines = [
        "| backend | workload | rung | median | + over the rung before | CPU per call |",
        "|---|---|---|---|---|---|",
    ]
    previous: dict[tuple[str, str], float] = {}
    for r in rungs:
        key = (r.backend, r.workload)
        before = _COMPARED_WITH.get(r.name)
        base = (
            next(x.wall_us for x in rungs if (x.backend, x.workload, x.name) == (*key, before))
            if before
            else previous.get(key)
        )
        added = "-" if base is None else f"{r.wall_us - base:+.0f} us"
        lines.append(
            f"| {r.backend} | {r.workload} | {r.name} | {r.wall_us:.0f} us | {added} "
            f"| {r.cpu_us:.0f} us |"
        )
        if not before:
            previous[key] = r.wall_us
    return "\n".join(lines) + "\n"


def main_breakdown(backends: list[Backend], out_dir: Path, *, quick: bool) -> list[Rung]:
    console = Console()
    rounds, calls = (10, 50) if quick else (30, 100)
    rungs: list[Rung] = []
    for db in fresh_databases(backends, "convostore_bench_breakdown"):
        console.log(f"{db.backend}: where a call's time goes, {rounds} rounds x {calls} calls")
        rungs.extend(asyncio.run(run_breakdown(db, rounds=rounds, calls=calls)))
    table = Table(title="Where the time of a call goes")
    for name in ("backend", "workload", "rung", "median us", "CPU us"):
        table.add_column(name)
    for r in rungs:
        table.add_row(r.backend, r.workload, r.name, f"{r.wall_us:.0f}", f"{r.cpu_us:.0f}")
    print_and_write(console, table, out_dir, "breakdown.md", markdown(rungs))
    return rungs
