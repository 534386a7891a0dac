"""``python -m benchmarks --streaming``: what storing a reply while it streams costs.

A reply of 500 tokens is stored three ways, on each backend, through the sync store:

* **batched**: ``begin_message``, the tokens flushed every ~100 ms of generation as one
  ``append_delta`` each, then ``finish_message``. The model's clock is simulated (100
  tokens/s, so 10 tokens per delta and 50 deltas): only database time is measured, the
  time the endpoint spends storing the reply rather than waiting for the model;
* **unbatched**: the same with one delta per token (500 deltas), for scale;
* **one append**: ``append_message`` of the final text, what a store that saves only the
  finished reply does.

Every run checks the stored reply against the text (a wrong answer is reported, not
timed). The figures are database time per reply (median and p95 over the repetitions)
and per delta.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.data import Backend, Database, fresh_databases
from benchmarks.report import percentile, print_and_write
from benchmarks.workloads import CheckError
from convostore import Store

TOKENS = 500
TOKENS_PER_SECOND = 100
FLUSH_EVERY_S = 0.1
USER = "bench-stream"


@dataclass(frozen=True, slots=True)
class StreamRow:
    backend: str
    way: str
    calls: int  # store calls per reply
    median_ms: float
    p95_ms: float
    per_call_ms: float


def _tokens(n: int) -> list[str]:
    return [f"tok{i} " for i in range(n)]


def _batches(tokens: list[str], per_batch: int) -> list[str]:
    return ["".join(tokens[i : i + per_batch]) for i in range(0, len(tokens), per_batch)]


def _streamed(store: Store, cid: int, deltas: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    msg = store.begin_message(USER, cid)
    for seq, text in enumerate(deltas):
        store.append_delta(USER, msg.id, seq, text)
    done = store.finish_message(USER, msg.id)
    elapsed = time.perf_counter() - start
    if done.content != "".join(deltas) or done.status != "complete":
        raise CheckError(f"streamed reply {msg.id} stored {done.content[:40]!r}...")
    return elapsed, msg.id


def _appended(store: Store, cid: int, text: str) -> float:
    start = time.perf_counter()
    msg = store.append_message(USER, cid, {"role": "assistant", "content": text})
    elapsed = time.perf_counter() - start
    if msg.content != text:
        raise CheckError(f"appended reply {msg.id} stored {msg.content[:40]!r}...")
    return elapsed


def run_streaming(db: Database, *, reps: int, tokens: int = TOKENS) -> list[StreamRow]:
    """Time each way ``reps`` times (interleaved, after one warm-up each) on ``db``."""
    words = _tokens(tokens)
    per_batch = max(1, round(TOKENS_PER_SECOND * FLUSH_EVERY_S))
    ways = {"batched": _batches(words, per_batch), "unbatched": words}
    text = "".join(words)
    times: dict[str, list[float]] = {"batched": [], "unbatched": [], "one append": []}
    with Store(db.url, max_content_length=max(10_000, len(text))) as store:
        cid = store.create_conversation(USER, title="streaming bench").id
        store.append_message(USER, cid, {"role": "user", "content": "Tell me a story"})
        for rep in range(reps + 1):  # the first round warms up caches and connections
            for way, deltas in ways.items():
                elapsed, _ = _streamed(store, cid, deltas)
                if rep:
                    times[way].append(elapsed)
            elapsed = _appended(store, cid, text)
            if rep:
                times["one append"].append(elapsed)
        messages = store.get_messages(USER, cid)
        if [m.position for m in messages] != list(range(1, len(messages) + 1)):
            raise CheckError("positions are not gapless after the streamed replies")
    calls = {"batched": len(ways["batched"]) + 2, "unbatched": len(words) + 2, "one append": 1}
    rows = []
    for way, samples in times.items():
        median = statistics.median(samples) * 1000
        rows.append(
            StreamRow(
                db.backend,
                way,
                calls[way],
                median,
                percentile(sorted(samples), 95) * 1000,
                median / calls[way],
            )
        )
    return rows


def markdown(rows: list[StreamRow]) -> str:
    lines = [
        "| backend | way | store calls | median ms / reply | p95 ms | ms / call | x one append |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {r.backend: r.median_ms for r in rows if r.way == "one append"}
    for r in rows:
        ratio = r.median_ms / base[r.backend] if base.get(r.backend) else float("nan")
        lines.append(
            f"| {r.backend} | {r.way} | {r.calls} | {r.median_ms:.2f} | {r.p95_ms:.2f} "
            f"| {r.per_call_ms:.3f} | {ratio:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main_streaming(backends: list[Backend], out_dir: Path, *, quick: bool) -> list[StreamRow]:
    console = Console()
    reps = 5 if quick else 20
    rows: list[StreamRow] = []
    for db in fresh_databases(backends, "convostore_bench_streaming"):
        console.log(f"{db.backend}: streamed reply of {TOKENS} tokens, {reps} repetitions")
        rows.extend(run_streaming(db, reps=reps))
    table = Table(title=f"A streamed reply of {TOKENS} tokens (database time)")
    for name in ("backend", "way", "calls", "median ms", "p95 ms", "ms/call"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            r.backend,
            r.way,
            str(r.calls),
            f"{r.median_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.per_call_ms:.3f}",
        )
    print_and_write(console, table, out_dir, "streaming.md", markdown(rows))
    return rows
