"""``python -m benchmarks [--backend sqlite|postgresql|scale-out|all] [--quick]
[--scale|--search|--streaming|--breakdown] [--out DIR]``.

``scale-out``: W4/W5/W7 through PgBouncer and from a streaming replica next to direct
(``benchmarks/scaleout.py``); ``all`` runs it after the two databases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.data import BACKENDS, Backend
from benchmarks.workloads import Plan

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--backend", choices=[*BACKENDS, "scale-out", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a few minutes)")
    parser.add_argument(
        "--scale", action="store_true", help="grow to 1M rows and show W4/W5 stay flat (+ plot)"
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="full-text search latency vs a LIKE scan, and the index's write overhead"
        " (with --scale: as the corpus grows 1k -> 1M)",
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="a streamed reply of 500 deltas (batched every ~100 ms) vs one append",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="where the time of one call goes: raw SQL, convostore's SQL, the pool, the store",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="largest step of the scale run (default 1M); --search: total messages",
    )
    parser.add_argument(
        "--no-alternatives", action="store_true", help="skip LangChain and the Agents SDK"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale_out = args.backend in ("scale-out", "all")
    backends: list[Backend] = (
        list(BACKENDS)
        if args.backend == "all"
        else []
        if args.backend == "scale-out"
        else [args.backend]
    )
    if args.search:
        from benchmarks.search import main_search

        main_search(backends, args.out, quick=args.quick, max_rows=args.max_rows, scale=args.scale)
        return 0
    if args.streaming:
        from benchmarks.streaming import main_streaming

        main_streaming(backends, args.out, quick=args.quick)
        return 0
    if args.breakdown:
        from benchmarks.breakdown import main_breakdown

        main_breakdown(backends or list(BACKENDS), args.out, quick=args.quick)
        return 0
    if args.scale:
        from benchmarks.scale import main_scale

        main_scale(backends, args.out, max_rows=args.max_rows or 1_000_000, quick=args.quick)
        return 0
    from benchmarks.run import main_run

    plan = Plan.quick() if args.quick else Plan()
    rows = main_run(
        backends,
        plan,
        args.out,
        quick=args.quick,
        alternatives=not args.no_alternatives,
        scale_out=scale_out,
    )
    wrong = [r for r in rows if "WRONG" in r.status]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
