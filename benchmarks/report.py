"""Statistics, the rich table, and the JSON + Markdown result files."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.workloads import WORKLOADS, Measurement
from convostore.config import get_settings

#: Backend -> workload -> (comparison, bound) on the ratio to the raw baseline of the same
#: run (W6/W8: throughput ratio, so higher is better).
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "postgresql": {
        "W1": ("<=", 1.3),
        "W2": ("<=", 1.6),
        "W3": ("<=", 1.6),
        "W4": ("<=", 1.3),
        "W5": ("<=", 1.3),
        "W6": (">=", 0.5),
        "W7": ("<=", 1.6),
        "W8": (">=", 0.77),
    },
    # The direct rows of the scale-out run (benchmarks/scaleout.py) keep PostgreSQL's bars.
    "pg-scale-out": {
        "W4": ("<=", 1.3),
        "W5": ("<=", 1.3),
        "W7": ("<=", 1.6),
    },
    "sqlite": {
        **dict.fromkeys(("W1", "W2", "W3", "W4", "W5", "W7"), ("<=", 2.0)),
        "W6": (">=", 0.5),
        "W8": (">=", 0.5),
    },
}
#: Workloads timed as a whole run of concurrent writers: reported as throughput.
THROUGHPUT = ("W6", "W8")
CONVOSTORE = ("convostore", "convostore-async")
#: Relative difference under which an alternative and convostore count as even.
TIE = 0.05
RAW = ("raw psycopg", "raw sqlite3")
#: The bare floor of the job (second ratio column): not a baseline for the targets.
FLOOR = ("floor psycopg", "floor sqlite3")
#: convostore through PgBouncer / from a replica: compared with direct convostore.
SCALE_OUT = ("convostore via pgbouncer", "convostore via replica")


def percentile(samples: list[int], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a real observed value)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


@dataclass
class Row:
    """One line of the results table."""

    backend: str
    workload: str
    subject: str
    n: int
    median_ms: float | None
    p99_ms: float | None
    throughput: float | None  # W6/W8: messages per second (from the median run)
    ratio: float | None  # to the raw baseline (W6/W8: throughput ratio)
    vs_convostore: float | None  # alternatives: their median / convostore's
    vs_floor: float | None  # median / the floor's (W1..W5)
    status: str
    note: str = ""


def summarize(measurements: list[Measurement]) -> list[Row]:
    """Medians, p99s, ratios to the raw baseline and target verdicts."""
    by_key = {(m.backend, m.workload, m.subject): m for m in measurements}
    rows: list[Row] = []
    for m in measurements:
        if m.error is not None or not m.samples_ns:
            rows.append(
                Row(
                    m.backend,
                    m.workload,
                    m.subject,
                    0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    m.error or "no samples",
                    m.note,
                )
            )
            continue
        median = statistics.median(m.samples_ns)
        p99 = percentile(m.samples_ns, 99)
        throughput = m.items / (median / 1e9) if m.workload in THROUGHPUT else None
        raw = next(
            (by_key[k] for k in ((m.backend, m.workload, r) for r in RAW) if k in by_key), None
        )
        ratio = None
        if raw is not None and raw.samples_ns and raw.error is None:
            raw_median = statistics.median(raw.samples_ns)
            ratio = raw_median / median if m.workload in THROUGHPUT else median / raw_median
        floor = next(
            (by_key[k] for k in ((m.backend, m.workload, f) for f in FLOOR) if k in by_key), None
        )
        vs_floor = None
        if floor is not None and floor.samples_ns and floor.error is None:
            vs_floor = median / statistics.median(floor.samples_ns)
        vs = None
        ours = by_key.get((m.backend, m.workload, "convostore"))
        if m.subject not in CONVOSTORE + RAW + FLOOR and ours is not None and ours.samples_ns:
            vs = median / statistics.median(ours.samples_ns)
        rows.append(
            Row(
                m.backend,
                m.workload,
                m.subject,
                len(m.samples_ns),
                median / 1e6,
                p99 / 1e6,
                throughput,
                ratio,
                vs,
                vs_floor,
                _status(m, ratio, vs),
                m.note,
            )
        )
    return rows


def _status(m: Measurement, ratio: float | None, vs: float | None) -> str:
    if m.subject in RAW:
        return "baseline"
    if m.subject in FLOOR:
        return "floor"
    if m.subject in CONVOSTORE:
        if ratio is None:
            return "ok"
        op, bound = TARGETS[m.backend][m.workload]
        met = ratio <= bound if op == "<=" else ratio >= bound
        return f"{'ok' if met else 'MISS'} (target {op} {bound}x)"
    if vs is None:
        return "ok"
    if m.subject in SCALE_OUT:
        return f"{vs:.2f}x direct convostore"
    if abs(vs - 1) <= TIE:
        return "tie (within 5%)"
    return "convostore faster" if vs > 1 else "ALTERNATIVE FASTER"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cells(r: Row) -> list[str]:
    if r.workload in THROUGHPUT:
        timing = f"{_fmt(r.throughput, ',.0f')} msg/s"
        p99 = f"run {_fmt(r.median_ms, '.1f')} ms"
    else:
        timing = f"{_fmt(r.median_ms, '.3f')} ms"
        p99 = f"{_fmt(r.p99_ms, '.3f')} ms"
    return [
        r.workload,
        r.subject,
        str(r.n),
        timing,
        p99,
        _fmt(r.ratio, ".2f") + ("x" if r.ratio is not None else ""),
        _fmt(r.vs_floor, ".2f") + ("x" if r.vs_floor is not None else ""),
        _fmt(r.vs_convostore, ".2f") + ("x" if r.vs_convostore is not None else ""),
        r.status,
    ]


HEADERS = [
    "workload",
    "subject",
    "n",
    "median",
    "p99",
    "ratio to raw",
    "ratio to floor",
    "alt / convostore",
    "status",
]


def print_table(rows: list[Row], console: Console | None = None) -> None:
    """One rich table per backend."""
    console = console or Console()
    console.width = max(console.width, 150)
    for backend in sorted({r.backend for r in rows}):
        table = Table(title=f"convostore benchmarks - {backend}", show_lines=False)
        for h in HEADERS:
            table.add_column(h, justify="right" if h in ("n", "median", "p99") else "left")
        for r in rows:
            if r.backend == backend:
                style = (
                    "red"
                    if ("MISS" in r.status or "WRONG" in r.status or "FASTER" in r.status)
                    else None
                )
                table.add_row(*_cells(r), style=style)
        console.print(table)
        console.print("  " + "; ".join(f"{k} {v}" for k, v in WORKLOADS.items()))
        for r in rows:
            if r.backend == backend and r.note and r.workload == "W4":
                console.print(f"  note: {r.subject}: {r.note}")


def markdown(rows: list[Row]) -> str:
    """The tables as GitHub Markdown (for docs/benchmarks.md)."""
    out: list[str] = ["Workloads: " + "; ".join(f"{k} {v}" for k, v in WORKLOADS.items()), ""]
    for backend in sorted({r.backend for r in rows}):
        out.append(f"### {backend}\n")
        out.append("| " + " | ".join(HEADERS) + " |")
        out.append("|" + "---|" * len(HEADERS))
        for r in rows:
            if r.backend == backend:
                out.append("| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |")
        out.append("")
    return "\n".join(out)


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(pg_version: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    lscpu = _run(["lscpu"])
    model = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")),
        "",
    )

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "postgresql": pg_version,
        "sqlite": sqlite3.sqlite_version,
        # Every SQLite subject commits at this level (the alternatives at SQLite's default,
        # which is FULL too); PostgreSQL subjects at the server's synchronous_commit (on).
        "sqlite_synchronous": get_settings().sqlite_synchronous.upper(),
        "packages": {
            p: version(p)
            for p in (
                "convostore",
                "sqlalchemy",
                "psycopg",
                "aiosqlite",
                "langchain-postgres",
                "openai-agents",
            )
        },
    }


def write_results(
    out_dir: Path, name: str, rows: list[Row], info: dict[str, Any], extra: dict[str, Any]
) -> tuple[Path, Path]:
    """``<name>.json`` (everything) and ``<name>.md`` (the tables) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    payload = {"machine": info, **extra, "rows": [asdict(r) for r in rows]}
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    lines = [
        f"# convostore benchmark results ({info['date']})",
        "",
        machine_md(info),
        "",
        markdown(rows),
    ]
    md_path.write_text("\n".join(lines))
    return json_path, md_path


def machine_md(info: dict[str, Any]) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    return (
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['os']}; Python {info['python']}; "
        f"PostgreSQL {info['postgresql'] or '-'}; SQLite {info['sqlite']} "
        f"(synchronous={info.get('sqlite_synchronous', '?')}); {pk}."
    )


def print_and_write(console: Console, table: Table, out_dir: Path, name: str, text: str) -> Path:
    """Show ``table`` and write ``text`` to ``out_dir/name`` (a run's markdown result)."""
    console.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(text)
    console.print(f"results written to {path}")
    return path
