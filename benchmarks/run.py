"""Run every workload on every subject of one backend, then report."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from benchmarks import report
from benchmarks.data import PG_SERVER_URL, Backend, create_database, drop_database
from benchmarks.subjects import Subject, subjects_for
from benchmarks.workloads import (
    WORKLOADS,
    Measurement,
    Plan,
    read_workloads,
    w1_append_one,
    w2_append_batch,
    w6_concurrent,
    w8_concurrent_many,
)

Log = Callable[[str], None]


async def run_backend(
    backend: Backend,
    plan: Plan,
    workdir: Path,
    *,
    alternatives: bool = True,
    only: frozenset[str] | None = None,
    log: Log = print,
) -> tuple[list[Measurement], list[str]]:
    """All workloads on a fresh database of ``backend``; returns measurements and notes."""
    log(f"{backend}: creating a fresh database and loading the read data set")
    db = create_database(backend, workdir)
    notes: list[str] = []
    measurements: list[Measurement] = []
    try:
        rs = plan.read_set(db)
        subjects, skipped = subjects_for(db, alternatives=alternatives)
        notes.extend(f"{backend}: {s}" for s in skipped)
        for msg in skipped:
            log(f"{backend}: {msg}")
        opened: list[Subject] = []
        for s in subjects:
            try:
                await s.open()
                opened.append(s)
            except Exception as exc:  # an alternative that cannot start is skipped, loudly
                note = f"{backend}: {s.name} skipped: could not open ({type(exc).__name__}: {exc})"
                notes.append(note)
                log(note)
        try:
            want = only or frozenset(WORKLOADS)
            for name, runner in (("W1", w1_append_one), ("W2", w2_append_batch)):
                if name in want:
                    log(f"{backend}: {name}")
                    eligible = [s for s in opened if name in s.supports]
                    measurements.extend((await runner(eligible, plan, backend)).values())
            if want & {"W3", "W4", "W5", "W7"}:
                log(f"{backend}: W3, W4, W5, W7 (seeding the alternatives' own tables first)")
                reads = await read_workloads(opened, rs, plan, backend)
                for workload, res in reads.items():
                    if workload in want:
                        measurements.extend(res.values())
            for name, runner in (("W6", w6_concurrent), ("W8", w8_concurrent_many)):
                if name in want:
                    log(f"{backend}: {name}")
                    measurements.extend((await runner(opened, plan, backend)).values())
        finally:
            for s in opened:
                await s.close()
    finally:
        drop_database(db)
    return measurements, notes


def pg_version() -> str | None:
    try:
        with psycopg.connect(PG_SERVER_URL, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except psycopg.Error:
        return None


def main_run(
    backends: list[Backend],
    plan: Plan,
    out_dir: Path,
    *,
    quick: bool,
    alternatives: bool = True,
    scale_out: bool = False,
) -> list[report.Row]:
    """The normal run: every backend, the table, the result files."""
    console = Console()
    measurements: list[Measurement] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="convostore-bench-") as tmp:
        for backend in backends:
            ms, ns = asyncio.run(
                run_backend(backend, plan, Path(tmp), alternatives=alternatives, log=console.log)
            )
            measurements.extend(ms)
            notes.extend(ns)
    if scale_out:
        from benchmarks.scaleout import run_or_note

        ms, ns = run_or_note(plan, console.log)
        measurements.extend(ms)
        notes.extend(ns)
    rows = report.summarize(measurements)
    report.print_table(rows, console)
    for n in notes:
        console.print(n)
    info = report.machine(pg_version() if "postgresql" in backends or scale_out else None)
    extra: dict[str, Any] = {"plan": asdict(plan), "quick": quick, "notes": notes}
    json_path, md_path = report.write_results(out_dir, "results", rows, info, extra)
    console.print(f"results written to {json_path} and {md_path}")
    return rows
