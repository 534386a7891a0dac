"""The benchmark code itself: every workload runs in a tiny mode on both databases, and its
correctness checks catch wrong answers and lost writes (no timing assertions anywhere)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from benchmarks.__main__ import parse_args
from benchmarks.data import Database, build_read_set, migrated
from benchmarks.report import Row, markdown, percentile, summarize
from benchmarks.scale import plot, scale_backend, steps_up_to
from benchmarks.subjects import ConvoSync, RawPostgres, RawSqlite, Subject, Writer, subjects_for
from benchmarks.workloads import (
    CheckError,
    Measurement,
    Plan,
    expect,
    read_workloads,
    verify_conversation,
    w1_append_one,
    w2_append_batch,
    w6_concurrent,
    w8_concurrent_many,
)
from rich.console import Console

PLAN = Plan.tiny()


@pytest.fixture
def bench_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Database:
    """A fresh, migrated database of the parametrised backend for the benchmark code."""
    if backend == "sqlite":
        path = tmp_path / "bench.db"
        return migrated(Database("sqlite", f"sqlite:///{path}", path))
    factory: Callable[[str], str] = request.getfixturevalue("pg_database")
    return migrated(Database("postgresql", factory("convostore_bench_smoke")))


def _raw(db: Database) -> Subject:
    return RawPostgres(db) if db.backend == "postgresql" else RawSqlite(db)


async def _opened(subjects: list[Subject]) -> list[Subject]:
    for s in subjects:
        await s.open()
    return subjects


async def _close(subjects: list[Subject]) -> None:
    for s in subjects:
        await s.close()


async def test_every_workload_runs_and_checks_pass(bench_db: Database) -> None:
    subjects, skipped = subjects_for(bench_db)
    await _opened(subjects)
    try:
        rs = PLAN.read_set(bench_db)
        w1 = await w1_append_one(subjects, PLAN, bench_db.backend)
        w2 = await w2_append_batch(subjects, PLAN, bench_db.backend)
        reads = await read_workloads(subjects, rs, PLAN, bench_db.backend)
        w6 = await w6_concurrent(subjects, PLAN, bench_db.backend)
        w8 = await w8_concurrent_many(subjects, PLAN, bench_db.backend)
    finally:
        await _close(subjects)
    names = {s.name for s in subjects}
    assert {"convostore", "convostore-async"} <= names
    expected_n = {
        "W1": PLAN.w1_appends,
        "W2": PLAN.w2_reps,
        "W3": PLAN.w3_reps,
        "W4": PLAN.w4_reps,
        "W5": PLAN.w5_reps,
        "W6": PLAN.w6_reps,
        "W7": PLAN.w7_reps,
        "W8": PLAN.w6_reps,
    }
    every = [*w1.values(), *w2.values(), *w6.values(), *w8.values()]
    every += [m for res in reads.values() for m in res.values()]
    for m in every:
        assert m.error is None, (m.workload, m.subject, m.error)
        assert len(m.samples_ns) == expected_n[m.workload], (m.workload, m.subject)
        assert all(ns > 0 for ns in m.samples_ns)
    # W5, W7 and W6/W8 only run on subjects with the convostore schema.
    for workload in ("W5", "W7"):
        assert {m.subject for m in reads[workload].values()} == {
            s.name for s in subjects if s.shares_schema and workload in s.supports
        }
    assert "floor" in {r.status for r in summarize(every)}
    assert {m.subject for m in reads["W7"].values()} >= {"convostore", "convostore-async"}
    assert set(w6) == {s.name for s in subjects if "W6" in s.supports}
    assert set(w8) == set(w6)
    if bench_db.backend == "sqlite":
        assert "langchain-postgres" not in names  # PostgreSQL only
    assert not [m for m in skipped if "agents" in m]  # installed in the dev environment
    rows = summarize(every)
    assert {r.status for r in rows if r.subject.startswith("raw")} == {"baseline"}
    assert all(r.ratio is not None for r in rows)


class _WrongOrder(RawSqlite):
    """Returns the tail newest-first: the right rows in the wrong order."""

    name = "wrong order"

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        rows = super().read_last(user_id, conv, n)
        rows.reverse()
        return rows


class _Lossy(RawSqlite):
    """Silently drops a message of the first concurrent writer."""

    name = "lossy"

    def writers(self, k: int) -> list[Writer]:
        out = super().writers(k)
        first = out[0]
        calls = {"n": 0}

        def drop_second(u: str, c: Any, m: Any) -> Any:
            calls["n"] += 1
            return None if calls["n"] == 2 else first(u, c, m)

        return [drop_second, *out[1:]]


class _MissingLast(ConvoSync):
    """Loses the last message of a full read."""

    name = "missing last"

    def read_all(self, user_id: str, conv: Any) -> Any:
        return self.store.get_messages(user_id, conv)[:-1]


class _NoToolResults(ConvoSync):
    """Sends the model tool calls without their results (the window the API rejects)."""

    name = "no tool results"

    def history(self, user_id: str, conv: Any, max_tokens: int) -> Any:
        window = self.store.get_history(user_id, conv, max_tokens=max_tokens)
        return [m for m in window if m["role"] != "tool"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_wrong_answers_are_reported_not_timed(bench_db: Database) -> None:
    lossy = _Lossy(bench_db)
    subjects = await _opened(
        [
            RawSqlite(bench_db),
            _WrongOrder(bench_db),
            _MissingLast(bench_db),
            _NoToolResults(bench_db),
        ]
    )
    await lossy.open()
    try:
        rs = build_read_set(
            bench_db,
            n_read=5,
            n_tail=30,
            noise_conversations=1,
            noise_messages=3,
            n_list=7,
            other_users=1,
            n_history=12,
        )
        reads = await read_workloads(subjects, rs, PLAN, "sqlite")
        w6 = await w6_concurrent([lossy], PLAN, "sqlite")
    finally:
        await _close([*subjects, lossy])
    assert reads["W4"]["raw sqlite3"].error is None
    assert (reads["W4"]["wrong order"].error or "").startswith("WRONG ANSWER: W4: item 0")
    assert reads["W4"]["wrong order"].samples_ns == []
    assert (reads["W3"]["missing last"].error or "").startswith("WRONG ANSWER: W3: 4 items")
    assert (w6["lossy"].error or "").startswith("WRONG ANSWER: W6")
    assert reads["W7"]["raw sqlite3"].error is None
    assert (reads["W7"]["no tool results"].error or "").startswith("WRONG ANSWER: W7")
    rows = summarize([m for res in reads.values() for m in res.values()])
    wrong = [r for r in rows if r.status.startswith("WRONG")]
    assert {(r.workload, r.subject) for r in wrong} == {
        ("W4", "wrong order"),
        ("W3", "missing last"),
        ("W7", "no tool results"),
    }
    assert all(r.median_ms is None for r in wrong)


async def test_write_check_catches_a_counter_that_did_not_move(bench_db: Database) -> None:
    (raw,) = await _opened([_raw(bench_db)])
    try:
        conv = raw.create_conversation("checker", "t")
        raw.append_batch("checker", conv, raw.prepare_batch([("user", "a"), ("assistant", "b")]))
        verify_conversation(bench_db, conv, ["a", "b"])
        with pytest.raises(CheckError, match="contents"):
            verify_conversation(bench_db, conv, ["b", "a"])
        p = "%s" if bench_db.backend == "postgresql" else "?"
        raw.conn.execute(f"UPDATE conversations SET message_count = 1 WHERE id = {p}", (conv,))  # type: ignore[attr-defined]
        with pytest.raises(CheckError, match="message_count is 1"):
            verify_conversation(bench_db, conv, ["a", "b"])
    finally:
        await raw.close()


def test_expect_reports_count_and_first_difference() -> None:
    expect(["a", "b"], ["a", "b"], "same")
    with pytest.raises(CheckError, match=r"x: 1 items, expected 2"):
        expect(["a"], ["a", "b"], "x")
    with pytest.raises(CheckError, match=r"y: item 1 is 'c'"):
        expect(["a", "c"], ["a", "b"], "y")


def test_percentile_and_summary_ratios() -> None:
    assert percentile([5, 1, 3], 50) == 3.0
    assert percentile(list(range(1, 101)), 99) == 99.0
    assert percentile([7], 99) == 7.0
    ms = [
        Measurement("W1", "sqlite", "raw sqlite3", [100, 100, 100]),
        Measurement("W1", "sqlite", "convostore", [120, 120, 120]),
        Measurement("W1", "sqlite", "convostore-async", [210, 210, 210]),
        Measurement("W6", "sqlite", "raw sqlite3", [1000], items=10),
        Measurement("W6", "sqlite", "convostore", [4000], items=10),
        Measurement("W3", "sqlite", "raw sqlite3", error="boom"),
    ]
    rows: dict[tuple[str, str], Row] = {(r.workload, r.subject): r for r in summarize(ms)}
    assert rows["W1", "convostore"].ratio == pytest.approx(1.2)
    assert rows["W1", "convostore"].status.startswith("ok")
    assert rows["W1", "convostore-async"].status.startswith("MISS")
    assert rows["W6", "convostore"].ratio == pytest.approx(0.25)  # throughput ratio
    assert rows["W6", "convostore"].status.startswith("MISS")
    assert rows["W3", "raw sqlite3"].status == "boom"
    text = markdown(list(rows.values()))
    assert "| W1 | convostore | 3 |" in text and "### sqlite" in text


def test_cli_arguments() -> None:
    args = parse_args(["--backend", "sqlite", "--quick", "--out", "x"])
    assert (args.backend, args.quick, args.scale, str(args.out)) == ("sqlite", True, False, "x")
    assert parse_args([]).backend == "all"
    with pytest.raises(SystemExit):
        parse_args(["--backend", "mysql"])
    assert steps_up_to(1_000_000) == [1000, 10_000, 100_000, 1_000_000]
    assert steps_up_to(999) == []


async def test_scale_run_in_tiny_steps(bench_db: Database, tmp_path: Path) -> None:
    plans: dict[str, dict[str, str]] = {}
    points = await scale_backend(bench_db, [25, 50], 3, Console(quiet=True), plans)
    keys = {(p.workload, p.subject, p.rows) for p in points}
    floor = "floor psycopg" if bench_db.backend == "postgresql" else "floor sqlite3"
    subjects = {"convostore", "convostore-async", _raw(bench_db).name, floor}
    expected = {(w, s, n) for w in ("W4", "W5", "W7") for s in subjects for n in (25, 50)}
    assert keys == {k for k in expected if not (k[0] == "W7" and k[1] == floor)}
    assert all(p.samples == 3 and p.median_ms > 0 for p in points)
    assert set(plans[bench_db.backend]) == {"W4", "W5"}
    if bench_db.backend == "sqlite":  # PostgreSQL rightly scans a 50-row table instead
        assert all("USING INDEX" in text for text in plans["sqlite"].values())
    else:
        assert all(text.startswith("Limit") for text in plans["postgresql"].values())
    plot(points, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_workload_runs_and_checks_pass(
    bench_db: Database, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """S1 (search vs LIKE, with its answers checked) and S2 (write overhead), tiny."""
    from benchmarks.search import SearchPlan, load, search_latency, write_overhead

    plan = SearchPlan.tiny()
    owned = load(bench_db, plan)
    assert owned == plan.total_messages // plan.user_share
    rows = search_latency(bench_db, plan, owned)
    assert {r["subject"] for r in rows} == {"convostore search", "LIKE scan"}
    assert all(r["n"] == plan.reps and r["median_ms"] > 0 for r in rows)
    if backend == "sqlite":
        other = migrated(Database("sqlite", f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "b.db"))
    else:
        factory: Callable[[str], str] = request.getfixturevalue("pg_database")
        other = migrated(Database("postgresql", factory("convostore_bench_smoke_nofts")))
    overhead = write_overhead(bench_db, other, plan)
    assert {(r["workload"], r["subject"]) for r in overhead} == {
        (f"S2 {w}", s)
        for w in ("W1 append one", f"W2 batch of {plan.w2_batch}")
        for s in ("with index", "without index")
    }
    assert parse_args(["--search", "--max-rows", "5000"]).search


def test_the_search_scale_series_runs(backend: str, tmp_path: Path) -> None:
    """``--search --scale``: one step here (1,000 messages), every query's answer checked."""
    import io

    from benchmarks.search import QUERIES, print_scale, search_scale
    from rich.console import Console

    rows = search_scale(backend, tmp_path, 1000)  # type: ignore[arg-type]
    assert {r["total_messages"] for r in rows} == {1000}
    assert {r["workload"] for r in rows} == {f"S1 {label}" for label in QUERIES}
    out = io.StringIO()
    print_scale(rows, Console(file=out, width=200))
    assert "1,000" in out.getvalue()


def test_the_streaming_benchmark_runs_and_checks_the_replies(bench_db: Database) -> None:
    from benchmarks.streaming import markdown, run_streaming

    rows = run_streaming(bench_db, reps=1, tokens=30)
    assert [(r.way, r.calls) for r in rows] == [
        ("batched", 5),
        ("unbatched", 32),
        ("one append", 1),
    ]
    assert all(r.median_ms > 0 for r in rows)
    assert f"| {bench_db.backend} | one append | 1 |" in markdown(rows)
    assert parse_args(["--streaming"]).streaming


@pytest.mark.postgres
async def test_scale_out_run_in_tiny_mode() -> None:
    from benchmarks.scaleout import LABEL, POOLED, REPLICA, WORKLOADS, run_scale_out

    measurements, notes = await run_scale_out(PLAN, log=lambda _: None)
    assert notes == []
    subjects = {"raw psycopg", "convostore", POOLED, REPLICA}
    assert {(m.workload, m.subject) for m in measurements} == {
        (w, s) for w in WORKLOADS for s in subjects
    }
    assert all(m.error is None and m.samples_ns and m.backend == LABEL for m in measurements)
    rows = summarize(measurements)
    assert {r.status for r in rows if r.subject in (POOLED, REPLICA)} <= {
        r.status for r in rows if r.status.endswith("x direct convostore")
    }
    assert parse_args(["--backend", "scale-out"]).backend == "scale-out"


async def test_the_breakdown_times_every_rung_and_checks_the_answers(bench_db: Database) -> None:
    from benchmarks.breakdown import markdown, run_breakdown

    rungs = await run_breakdown(bench_db, rounds=1, calls=2)
    names = ["raw SQL", "convostore's SQL", "+ pooled connection", "Store", "AsyncStore"]
    if bench_db.backend == "postgresql":
        names.append("raw async SQL")
    by_workload: dict[str, list[str]] = {}
    for r in rungs:
        by_workload.setdefault(r.workload, []).append(r.name)
        assert r.wall_us > 0 and r.cpu_us >= 0
    assert by_workload == {"W4": names, "W5": names, "W1": ["raw SQL", "Store", "AsyncStore"]}
    table = markdown(rungs)
    assert f"| {bench_db.backend} | W4 | + pooled connection |" in table
    assert parse_args(["--breakdown"]).breakdown


async def test_a_wrong_answer_in_the_breakdown_is_an_error() -> None:
    from benchmarks.breakdown import Step, _measure

    with pytest.raises(CheckError, match="broken: wrong answer"):
        await _measure([Step("broken", lambda: [], lambda result: len(result) == 20)], 1, 1)
