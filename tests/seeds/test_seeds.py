"""The seeds' own quickstart scripts, run unchanged (import paths aside) on convostore.

Each ``seed_*.py`` is one seed's app: its own users table as the seed has it (``users``
in 000/001, ``user`` in 002, none in 003), configured the way a host app is (environment
variables read when ``convostore.models`` is imported), so each runs in a fresh process
against a fresh database of each backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]

SEEDS = {
    # seed: (CONVOSTORE_USERS_TABLE, lines its run must print)
    "seed_000": ("users", ["✅ All tables created successfully", "cascade verified: 0 rows left"]),
    "seed_001": (
        "users",
        [
            "db check and db verify passed",
            "host autogenerate: no changes",
            "Should get error: foreign key constraint violation -> got it",
            "Should return 0 rows -> 0 rows",
            "async session: 2 messages in order",
        ],
    ),
    "seed_002": (
        "user",
        [
            "✓ Retrieved 2 messages",
            "✓ Foreign key constraint working: IntegrityError",
            "✓ User isolation verified!",
            "✓ Retrieved 1000 messages in",
            "All seed 002 checks passed",
        ],
    ),
    "seed_003": (
        None,
        [
            "host autogenerate: no changes",
            "✅ CASCADE DELETE works correctly",
            "✅ All tests passed!",
        ],
    ),
}


def _run_host_app(
    args: list[str], tmp_path: Path, url: str, users_table: str | None
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` as a host app configured by its environment, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOSTORE_")}
    env.update({"DATABASE_URL": url, "PYTHONPATH": str(ROOT)})
    if users_table is not None:
        env["CONVOSTORE_USERS_TABLE"] = users_table
    # cwd: no stray .env of the checkout is read.
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _url(backend: str, tmp_path: Path, pg_database: Callable[[str], str], name: str) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}" if backend == "sqlite" else pg_database(name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seed_quickstart_runs_unchanged(
    seed: str, backend: str, tmp_path: Path, pg_database: Callable[[str], str]
) -> None:
    users_table, expected = SEEDS[seed]
    url = _url(backend, tmp_path, pg_database, seed)
    run = _run_host_app([sys.executable, "-m", f"tests.seeds.{seed}"], tmp_path, url, users_table)
    assert run.returncode == 0, run.stdout + run.stderr
    for line in expected:
        assert line in run.stdout, run.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_existing_app_guide_runs_as_written(
    backend: str, tmp_path: Path, pg_database: Callable[[str], str]
) -> None:
    """docs/existing-app.md: its Python examples, in order, as one host app's script."""
    blocks = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "existing-app.md").read_text(), flags=re.S
    )
    # The env.py fragment belongs to the host's Alembic; the rest is one script.
    script = "\n".join(b for b in blocks if "context.configure" not in b)
    (tmp_path / "guide.py").write_text(
        f"import os\nDATABASE_URL = os.environ['DATABASE_URL']\n{script}\nprint('guide ok')\n"
    )
    url = _url(backend, tmp_path, pg_database, "guide")
    run = _run_host_app([sys.executable, "guide.py"], tmp_path, url, "users")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "guide ok" in run.stdout


def test_a_users_table_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    convostore = str(Path(sys.executable).with_name("convostore"))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    run = _run_host_app([convostore, "db", "upgrade"], tmp_path, url, "nope")
    assert run.returncode == 1
    assert "CONVOSTORE_USERS_TABLE=nope: there is no table 'nope'" in " ".join(run.stderr.split())
    assert "Traceback" not in run.stderr
