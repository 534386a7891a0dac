"""The full-text search example in docs/library.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def test_library_search_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = LIBRARY.read_text("utf-8").split("## Full-text search", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    monkeypatch.chdir(tmp_path)  # the example's SQLite file lands here
    exec(compile(match.group(1), "docs/library.md", "exec"), {})
    assert (tmp_path / "search-example.db").exists()
