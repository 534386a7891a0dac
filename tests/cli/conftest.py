"""CLI fixtures: a Typer runner in a clean working directory (no stray .env)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in (
        "DATABASE_URL",
        "JWT_SECRET_KEY",
        "JWT_ALGORITHM",
        "CONVOSTORE_PURGE_EVERY",
        "CONVOSTORE_SERVE_DEV",
    ):
        # setenv first so that monkeypatch restores the original state even if a command
        # (serve --database-url / --dev) writes these variables into os.environ.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: wide enough not to wrap cells
    return CliRunner()
