"""W4, W5 and W7 through PgBouncer and from a streaming replica, next to direct.

``python -m benchmarks --backend scale-out`` (part of ``--backend all``, so of ``make
bench``). On a PostgreSQL cluster of the run's own, loaded with the read data set, and a
hot standby made from it with ``pg_basebackup -R`` (the same helpers the tests use:
``tests/pgcluster.py``, ``tests/pgbouncer.py``; needs root or sudo and the ``pgbouncer``
package), the same reads run, interleaved, on:

- ``raw psycopg``: the baseline, direct to the primary;
- ``convostore``: ``Store(primary)``, direct;
- ``convostore via pgbouncer``: ``Store(primary through PgBouncer, ?pgbouncer=true)``:
  transaction mode, so no server-side prepared statements, plus the pooler's hop;
- ``convostore via replica``: ``Store(primary, read_urls=[replica])``: the reads are
  answered by the standby (this store wrote nothing, so no read-your-writes wait).

The table's "vs convostore" column is each one's median over direct convostore's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from benchmarks.data import Database, migrated
from benchmarks.subjects import ConvoSync, RawPostgres, Subject
from benchmarks.workloads import Measurement, Plan, read_workloads
from convostore import Store

#: The backend label of these rows in the results table.
LABEL = "pg-scale-out"
WORKLOADS = ("W4", "W5", "W7")
POOLED = "convostore via pgbouncer"
REPLICA = "convostore via replica"


class ConvoPooled(ConvoSync):
    name = POOLED

    def __init__(self, db: Database, url: str) -> None:
        super().__init__(db)
        self.url = url

    async def open(self) -> None:
        self.store = Store(self.url)


class ConvoReplica(ConvoSync):
    name = REPLICA

    def __init__(self, db: Database, replica_url: str) -> None:
        super().__init__(db)
        self.replica_url = replica_url

    async def open(self) -> None:
        self.store = Store(self.db.url, read_urls=[self.replica_url])


def _replayed(primary: str, replica: str, patience_s: float = 60.0) -> None:
    """Wait until the standby has replayed all the primary has written."""
    with psycopg.connect(primary, autocommit=True) as p, psycopg.connect(replica) as r:
        row = p.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        assert row is not None
        deadline = time.monotonic() + patience_s
        while True:
            done = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [row[0]]).fetchone()
            r.rollback()
            if done and done[0]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not catch up")
            time.sleep(0.05)


async def run_scale_out(
    plan: Plan, *, log: Callable[[str], None] = print
) -> tuple[list[Measurement], list[str]]:
    """The three workloads on the four subjects; measurements labelled :data:`LABEL`."""
    from tests.pgbouncer import running_pgbouncer
    from tests.pgcluster import own_cluster, own_replica

    notes: list[str] = []
    log(f"{LABEL}: a primary of our own, the read data set, a streaming replica, a PgBouncer")
    with own_cluster() as primary:
        db = migrated(Database("postgresql", primary.url))
        rs = plan.read_set(db)
        with (
            own_replica(primary) as replica,
            running_pgbouncer("127.0.0.1", primary.port, "postgres") as port,
        ):
            replica_db = Database("postgresql", replica.url)
            _replayed(db.libpq_url, replica_db.libpq_url)
            pooled = f"postgresql://postgres@127.0.0.1:{port}/postgres?pgbouncer=true"
            subjects: list[Subject] = [
                RawPostgres(db),
                ConvoSync(db),
                ConvoPooled(db, pooled),
                ConvoReplica(db, replica.url),
            ]
            for s in subjects:
                await s.open()
            try:
                log(f"{LABEL}: W4, W5, W7 (W3 runs too, not reported)")
                reads = await read_workloads(subjects, rs, plan, LABEL)
            finally:
                for s in subjects:
                    await s.close()
    out: list[Measurement] = []
    for workload in WORKLOADS:
        out.extend(reads[workload].values())
    return out, notes


def run_or_note(plan: Plan, log: Callable[[str], None]) -> tuple[list[Measurement], list[str]]:
    """:func:`run_scale_out`, or a note saying why it could not run (never a crash)."""
    import asyncio

    try:
        return asyncio.run(run_scale_out(plan, log=log))
    except BaseException as exc:  # pytest's skip (no pg_createcluster), a missing PgBouncer
        if isinstance(exc, KeyboardInterrupt):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        note = f"{LABEL}: not run ({type(exc).__name__}: {first})"
        log(note)
        return [], [note]


__all__ = ["LABEL", "POOLED", "REPLICA", "run_or_note", "run_scale_out"]
