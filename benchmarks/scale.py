"""Scale run: W4, W5 and W7 as one conversation and one user's list grow 10x per step.

Both are index range scans (``(conversation_id, position)`` and
``(user_id, updated_at, id)``), so their latency must stay flat from 1,000 to 1,000,000
rows. The rows are bulk-loaded on the raw connection (setup, not timed); other
conversations' messages and other users' conversations are loaded alongside, so neither
index holds only the measured key.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import report
from benchmarks.data import Backend, Database, Loader, ReadSet, create_database, drop_database
from benchmarks.run import pg_version
from benchmarks.subjects import HISTORY_TOKENS, Subject, subjects_for
from benchmarks.workloads import Plan, call, check_equal, check_texts, check_titles, interleaved

TAIL = 20
PAGE = 20


@dataclass
class ScalePoint:
    """Median latency of one subject on one workload at one size."""

    backend: str
    workload: str
    subject: str
    rows: int
    median_ms: float
    p99_ms: float
    samples: int


def steps_up_to(max_rows: int) -> list[int]:
    """1,000, 10,000, ... up to and including ``max_rows``."""
    out, n = [], 1000
    while n <= max_rows:
        out.append(n)
        n *= 10
    return out


async def scale_backend(
    db: Database,
    steps: list[int],
    reps: int,
    console: Console,
    plans: dict[str, dict[str, str]],
) -> list[ScalePoint]:
    """Grow the data set of ``db`` step by step; measure W4, W5 and W7 at each size."""
    backend = db.backend
    points: list[ScalePoint] = []
    load = Loader(db)
    reader, lister = "scale-reader", "scale-lister"
    others = [f"scale-other-{k}" for k in range(10)]
    load.add_users([reader, lister, "scale-noise", *others])
    (tail_conv,) = load.add_conversations([(reader, "tail", load.tick())])
    have = 0
    subjects, _ = subjects_for(db, alternatives=False)
    for s in subjects:
        await s.open()
    try:
        for size in steps:
            started = time.monotonic()
            _grow(load, tail_conv, reader, lister, others, have, size)
            load.analyze()
            have = size
            console.log(
                f"{backend}: loaded {size:,} messages / conversations "
                f"in {time.monotonic() - started:.1f}s; measuring"
            )
            points.extend(await _measure(subjects, db, reader, lister, tail_conv, size, reps))
        plans[backend] = query_plans(db, reader, lister, tail_conv)
    finally:
        for s in subjects:
            await s.close()
        load.close()
    return points


def _grow(
    load: Loader, conv: int, reader: str, lister: str, others: list[str], have: int, size: int
) -> None:
    load.add_messages(conv, reader, f"c{conv}", have + 1, size + 1)
    # Other conversations written after it (a tenth as many messages).
    (noise,) = load.add_conversations([("scale-noise", "noise", load.tick())])
    load.add_messages(noise, "scale-noise", f"n{noise}", 1, max(2, (size - have) // 10) + 1)
    rows: list[tuple[str, str | None, datetime]] = []
    for k in range(have, size):
        rows.append((lister, f"L{k:07d}", load.tick()))
        if k % 10 == 0:
            rows.append((others[k // 10 % len(others)], f"O{k:07d}", load.tick()))
    load.add_conversations(rows)


async def _measure(
    subjects: list[Subject], db: Database, reader: str, lister: str, conv: int, size: int, reps: int
) -> list[ScalePoint]:
    rs = ReadSet(reader, 0, conv, 0, size, lister, size)
    tail, top = rs.expected_tail(TAIL), rs.expected_top(PAGE)
    plan = Plan(rounds=5, warmup=30)
    points: list[ScalePoint] = []
    raw = next(s for s in subjects if s.name.startswith("raw"))
    window = list(await call(raw, lambda: raw.history(reader, conv, HISTORY_TOKENS)))
    for workload in ("W4", "W5", "W7"):
        ops: dict[str, Any] = {}
        for s in subjects:
            if workload not in s.supports:
                continue
            if workload == "W7":
                ops[s.name] = (
                    partial(s.history, reader, conv, HISTORY_TOKENS),
                    partial(check_equal, window, "W7"),
                )
            elif workload == "W4":
                ops[s.name] = (
                    partial(s.read_last, reader, conv, TAIL),
                    partial(check_texts, s, tail, "W4"),
                )
            else:
                ops[s.name] = (
                    partial(s.list_recent, lister, PAGE),
                    partial(check_titles, s, top, "W5"),
                )
        res = await interleaved(
            [s for s in subjects if s.name in ops],
            ops,
            total=reps,
            plan=plan,
            workload=workload,
            backend=db.backend,
            seed=size,
        )
        for name, m in res.items():
            if m.error is not None:
                raise RuntimeError(f"{workload} {name} at {size:,}: {m.error}")
            points.append(
                ScalePoint(
                    db.backend,
                    workload,
                    name,
                    size,
                    statistics.median(m.samples_ns) / 1e6,
                    report.percentile(m.samples_ns, 99) / 1e6,
                    len(m.samples_ns),
                )
            )
    return points


COLORS = {"convostore": "tab:blue", "convostore-async": "tab:orange"}


def query_plans(db: Database, reader: str, lister: str, conv: int) -> dict[str, str]:
    """The database's plan for the W4 and W5 queries (must be index range scans)."""
    from benchmarks.subjects import SELECT_LAST, SELECT_RECENT

    pg = db.backend == "postgresql"
    p = "%s" if pg else "?"
    explain = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
    conn = db.raw()
    try:
        out = {}
        for workload, sql, params in (
            ("W4", SELECT_LAST.format(p=p), (conv, reader, TAIL)),
            ("W5", SELECT_RECENT.format(p=p), (lister, PAGE + 1)),
        ):
            rows = conn.execute(explain + sql, params).fetchall()
            out[workload] = " / ".join(str(r[0] if pg else r[-1]).strip() for r in rows)
        return out
    finally:
        conn.close()


def plot(points: list[ScalePoint], path: Path) -> None:
    """W4, W5 and W7 median latency against size: colour = subject, line style = backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    titles = {
        "W4": f"W4: last {TAIL} messages of one conversation",
        "W5": f"W5: {PAGE} most recent conversations of a user",
        "W7": f"W7: history window of {HISTORY_TOKENS:,} tokens",
    }
    for ax, workload in zip(axes, ("W4", "W5", "W7"), strict=True):
        for backend, subject in sorted({(p.backend, p.subject) for p in points}):
            mine = sorted(
                (
                    p
                    for p in points
                    if (p.workload, p.backend, p.subject) == (workload, backend, subject)
                ),
                key=lambda p: p.rows,
            )
            ax.plot(
                [p.rows for p in mine],
                [p.median_ms for p in mine],
                marker="o",
                color=COLORS.get(subject, "tab:green"),
                linestyle="-" if backend == "postgresql" else "--",
                label=f"{backend}: {subject}",
            )
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        what = "conversations of the user" if workload == "W5" else "messages in the conversation"
        ax.set_xlabel(what)
        ax.set_ylabel("median latency (ms)")
        ax.set_title(titles[workload], fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def print_points(points: list[ScalePoint], console: Console) -> None:
    table = Table(title="scale run: median latency (ms) by size")
    sizes = sorted({p.rows for p in points})
    for h in ["backend", "workload", "subject", *(f"{n:,}" for n in sizes), "largest / smallest"]:
        table.add_column(h)
    keys = sorted({(p.backend, p.workload, p.subject) for p in points})
    for key in keys:
        by_size = {p.rows: p.median_ms for p in points if (p.backend, p.workload, p.subject) == key}
        growth = by_size[sizes[-1]] / by_size[sizes[0]]
        table.add_row(*key, *(f"{by_size[n]:.3f}" for n in sizes), f"{growth:.2f}x")
    console.print(table)


def scale_markdown(points: list[ScalePoint]) -> str:
    sizes = sorted({p.rows for p in points})
    head = ["backend", "workload", "subject", *(f"{n:,}" for n in sizes), "largest / smallest"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted({(p.backend, p.workload, p.subject) for p in points}):
        by_size = {p.rows: p.median_ms for p in points if (p.backend, p.workload, p.subject) == key}
        growth = by_size[sizes[-1]] / by_size[sizes[0]]
        cells = [*key, *(f"{by_size[n]:.3f} ms" for n in sizes), f"{growth:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main_scale(
    backends: list[Backend], out_dir: Path, *, max_rows: int, quick: bool
) -> list[ScalePoint]:
    """The ``--scale`` run: table, ``scale.json``, ``scale.md`` and ``scale.png``."""
    console = Console()
    console.width = max(console.width, 150)
    steps = steps_up_to(max_rows)
    reps = 60 if quick else 300
    points: list[ScalePoint] = []
    plans: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="convostore-scale-") as tmp:
        for backend in backends:
            db = create_database(backend, Path(tmp))
            try:
                points.extend(asyncio.run(scale_backend(db, steps, reps, console, plans)))
            finally:
                drop_database(db)
    print_points(points, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = report.machine(pg_version() if "postgresql" in backends else None)
    payload = {
        "machine": info,
        "steps": steps,
        "reps": reps,
        "query_plans_at_largest_size": plans,
        "points": [asdict(p) for p in points],
    }
    (out_dir / "scale.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plan_lines = [
        f"- {backend} {workload}: `{text}`"
        for backend, by_workload in plans.items()
        for workload, text in by_workload.items()
    ]
    (out_dir / "scale.md").write_text(
        f"# convostore scale run ({info['date']})\n\n"
        + report.machine_md(info)
        + "\n\n"
        + scale_markdown(points)
        + "\nQuery plans at the largest size:\n\n"
        + "\n".join(plan_lines)
        + "\n"
    )
    for line in plan_lines:
        console.print(line)
    plot(points, out_dir / "scale.png")
    console.print(f"results written to {out_dir / 'scale.json'}, scale.md and scale.png")
    return points
