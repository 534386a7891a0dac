"""Search workload (S1): full-text search latency, next to a naive ``LIKE '%word%'`` scan.

``python -m benchmarks --search [--backend ...] [--quick] [--max-rows N] [--out DIR]``;
with ``--scale``, S1 at 1k, 10k, ... up to ``--max-rows`` (default 1M) messages in all.

One user owns a tenth of the messages (100k of 1M by default; ``--quick``: 10k of 100k);
the other users' messages carry the same words, so the index holds every user's matches
and the user filter has real work to do. Words are planted at fixed rates: ``needle`` in
1 of 10,000 messages (rare), ``medium`` in 1 of 100, and ``fox`` in every message (the
worst case: every one of the user's messages matches and is ranked). Each query is timed
through ``Store.search`` (a page of 20, snippets included) and as the naive baseline
``user_id = ? AND content LIKE '%word%'`` newest first, limit 20, on the raw driver.

Index write overhead (S2): ``append_message`` (W1) and a 1,000-message ``append_messages``
(W2) on a database with the index and on one with the index dropped, interleaved.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.data import FILLER, Backend, Database, Loader, create_database, drop_database
from benchmarks.report import percentile
from convostore import Store, _ddl
from convostore.db import make_engine

USER = "searcher"
#: label -> (query, the planted word it finds)
QUERIES = {
    "rare": ("needle", "needle"),
    "medium": ("medium", "medium"),
    "common": ("fox", "fox"),
    "prefix": ("needl*", "needle"),
}


@dataclass(frozen=True)
class SearchPlan:
    total_messages: int = 1_000_000
    user_share: int = 10  # the user owns 1 in user_share messages
    per_conversation: int = 1000
    reps: int = 50
    warmup: int = 3
    w1_appends: int = 200
    w2_batch: int = 1000
    w2_reps: int = 5

    @classmethod
    def quick(cls, total: int = 100_000) -> SearchPlan:
        return cls(total_messages=total, reps=30, w1_appends=100, w2_reps=3)

    @classmethod
    def tiny(cls) -> SearchPlan:
        return cls(
            total_messages=400,
            per_conversation=50,
            reps=2,
            warmup=1,
            w1_appends=3,
            w2_batch=5,
            w2_reps=2,
        )


def content_of(i: int) -> str:
    """Message ``i`` of a conversation: the filler (``fox``) and the planted words."""
    extra = ""
    if i % 10_000 == 7:
        extra = " needle"
    elif i % 100 == 3:
        extra = " medium"
    return f"#{i:07d} {FILLER}{extra}"


def expected_hits(n: int, word: str) -> int:
    """How many of messages 1..n carry ``word`` (for the correctness checks)."""
    if word == "fox":
        return n
    if word == "needle":
        return sum(1 for i in range(1, n + 1) if i % 10_000 == 7)
    return sum(1 for i in range(1, n + 1) if i % 100 == 3 and i % 10_000 != 7)


def load(db: Database, plan: SearchPlan) -> int:
    """Bulk-load the corpus; returns how many messages the searching user owns."""
    loader = Loader(db)
    try:
        users = [USER] + [f"other{k}" for k in range(plan.user_share - 1)]
        loader.add_users(users)
        per_user = plan.total_messages // plan.user_share
        convs = max(1, per_user // plan.per_conversation)
        n = per_user // convs
        for user in users:
            ids = loader.add_conversations(
                (user, f"{user} chat {c}", loader.tick()) for c in range(convs)
            )
            offset = 0
            for cid in ids:
                rows = (
                    (cid, user, i, "user" if i % 2 else "assistant", content_of(offset + i),
                     loader.tick())
                    for i in range(1, n + 1)
                )  # fmt: skip
                cols = "conversation_id, user_id, position, role, content, created_at"
                loader._load("messages", cols, rows, ts_columns=(5,))
                loader.conn.execute(
                    "UPDATE conversations SET message_count = {0} WHERE id = {0}".format(
                        "%s" if loader.pg else "?"
                    ),
                    (n, cid),
                )
                offset += n
        loader.analyze()
        if loader.pg:
            # What autovacuum does soon after a bulk load: it moves the GIN index's pending
            # list (fast updates) into the index proper, which searches then skip scanning.
            loader.conn.execute("VACUUM (ANALYZE) messages")
        return convs * n
    finally:
        loader.close()


def _like_sql(pg: bool) -> str:
    p = "%s" if pg else "?"
    return (
        f"SELECT id, content FROM messages WHERE user_id = {p} AND content LIKE {p}"
        " ORDER BY created_at DESC LIMIT 20"
    )


def _timed(fn: Any, reps: int, warmup: int) -> tuple[list[int], Any]:
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(reps):
        t0 = perf_counter_ns()
        result = fn()
        samples.append(perf_counter_ns() - t0)
    return samples, result


def _stats(samples: list[int]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples) / 1e6,
        "p99_ms": percentile(samples, 99) / 1e6,
        "n": len(samples),
    }


def search_latency(db: Database, plan: SearchPlan, owned: int) -> list[dict[str, Any]]:
    """S1: each query through the store and as the LIKE scan, interleaved by repetition."""
    rows: list[dict[str, Any]] = []
    raw = db.raw()
    pg = db.backend == "postgresql"
    with Store(db.url) as store:
        for label, (query, word) in QUERIES.items():
            want = expected_hits(owned, word)
            s_samples, page = _timed(
                lambda q=query: store.search(USER, q, limit=20), plan.reps, plan.warmup
            )
            if len(page.data) != min(20, want) or any(
                word not in h.message.content for h in page.data if h.message
            ):
                raise AssertionError(f"search {query!r}: {len(page.data)} hits, want {want}")
            like = f"%{word}%"
            l_samples, found = _timed(
                lambda like=like: raw.execute(_like_sql(pg), (USER, like)).fetchall(),
                plan.reps,
                plan.warmup,
            )
            if len(found) != min(20, want):
                raise AssertionError(f"LIKE {like!r}: {len(found)} rows, want {want}")
            for subject, samples in (("convostore search", s_samples), ("LIKE scan", l_samples)):
                rows.append(
                    {
                        "backend": db.backend,
                        "workload": f"S1 {label} ({query}, {want} hits)",
                        "subject": subject,
                        "user_messages": owned,
                        "total_messages": plan.total_messages,
                        **_stats(samples),
                    }
                )
    raw.close()
    return rows


def write_overhead(
    with_index: Database, without: Database, plan: SearchPlan
) -> list[dict[str, Any]]:
    """S2: W1/W2 appends with the search index and without it (``without`` has the search
    index dropped here: the rest of its schema stays at head, which the store needs)."""
    engine = make_engine(without.url)
    with engine.begin() as conn:
        for statement in _ddl.search_drop_statements(engine.dialect.name):
            conn.exec_driver_sql(statement)
    engine.dispose()
    samples: dict[tuple[str, str], list[int]] = {}
    stores = {"with index": Store(with_index.url), "without index": Store(without.url)}
    try:
        convs = {k: s.create_conversation("writer", title="w") for k, s in stores.items()}
        rng = random.Random(1)
        order = list(stores)
        for i in range(plan.w1_appends):
            rng.shuffle(order)
            for k in order:
                msg = {"role": "user", "content": f"{content_of(i)} append {i}"}
                t0 = perf_counter_ns()
                stores[k].append_message("writer", convs[k].id, msg)
                samples.setdefault(("W1 append one", k), []).append(perf_counter_ns() - t0)
        batch = [
            {"role": "user" if j % 2 else "assistant", "content": content_of(j)}
            for j in range(plan.w2_batch)
        ]
        for _ in range(plan.w2_reps):
            rng.shuffle(order)
            for k in order:
                t0 = perf_counter_ns()
                stores[k].append_messages("writer", convs[k].id, batch)
                samples.setdefault((f"W2 batch of {plan.w2_batch}", k), []).append(
                    perf_counter_ns() - t0
                )
    finally:
        for s in stores.values():
            s.close()
    rows = []
    for (workload, subject), values in samples.items():
        rows.append(
            {
                "backend": with_index.backend,
                "workload": f"S2 {workload}",
                "subject": subject,
                **_stats(values),
            }
        )
    return rows


def run_search(backend: Backend, workdir: Path, plan: SearchPlan) -> list[dict[str, Any]]:
    db = create_database(backend, workdir, "convostore_bench_search")
    try:
        owned = load(db, plan)
        rows = search_latency(db, plan, owned)
    finally:
        drop_database(db)
    with_index = create_database(backend, workdir, "convostore_bench_fts")
    without = create_database(backend, workdir, "convostore_bench_nofts")
    try:
        return rows + write_overhead(with_index, without, plan)
    finally:
        drop_database(with_index)
        drop_database(without)


def print_rows(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="search (S1) and index write overhead (S2)")
    for col in ("backend", "workload", "subject", "n", "median ms", "p99 ms"):
        table.add_column(col, justify="right" if "ms" in col or col == "n" else "left")
    for r in rows:
        table.add_row(r["backend"], r["workload"], r["subject"], str(r["n"]),
                      f"{r['median_ms']:.3f}", f"{r['p99_ms']:.3f}")  # fmt: skip
    console.print(table)


def search_scale(backend: Backend, workdir: Path, max_rows: int) -> list[dict[str, Any]]:
    """S1 at 1,000, 10,000, ... ``max_rows`` messages in all (the user owning a tenth):
    a fresh corpus per size, each query timed as in :func:`search_latency`."""
    rows: list[dict[str, Any]] = []
    n = 1000
    while n <= max_rows:
        plan = SearchPlan(total_messages=n, per_conversation=min(1000, n // 10), reps=30)
        db = create_database(backend, workdir, "convostore_bench_search")
        try:
            owned = load(db, plan)
            for row in search_latency(db, plan, owned):
                rows.append({**row, "workload": row["workload"].split(" (")[0]})
        finally:
            drop_database(db)
        n *= 10
    return rows


def print_scale(rows: list[dict[str, Any]], console: Console) -> None:
    sizes = sorted({r["total_messages"] for r in rows})
    table = Table(title="search (S1) as the corpus grows: median ms (the user owns a tenth)")
    for col in ("backend", "query", "subject", *(f"{n:,}" for n in sizes)):
        table.add_column(col, justify="right" if col[0].isdigit() else "left")
    keys = dict.fromkeys((r["backend"], r["workload"], r["subject"]) for r in rows)
    for backend, workload, subject in keys:
        by_size = {
            r["total_messages"]: r["median_ms"]
            for r in rows
            if (r["backend"], r["workload"], r["subject"]) == (backend, workload, subject)
        }
        cells = [f"{by_size[n]:.2f}" if n in by_size else "" for n in sizes]
        table.add_row(backend, workload, subject, *cells)
    console.print(table)


def main_search(
    backends: list[Backend],
    out: Path,
    *,
    quick: bool,
    max_rows: int | None = None,
    scale: bool = False,
) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    if scale:
        rows = [r for b in backends for r in search_scale(b, out, max_rows or 1_000_000)]
        print_scale(rows, Console())
        (out / "search-scale.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
        return rows
    plan = SearchPlan.quick(max_rows or 100_000) if quick else SearchPlan()
    if max_rows and not quick:
        plan = SearchPlan(total_messages=max_rows)
    rows: list[dict[str, Any]] = []
    for backend in backends:
        rows += run_search(backend, out, plan)
    print_rows(rows, Console())
    (out / "search.json").write_text(
        json.dumps({"plan": asdict(plan), "rows": rows}, indent=1) + "\n"
    )
    return rows
