"""The README's curl walkthrough, run line for line against a real server process.

The test starts ``convostore serve --migrate`` (uvicorn) on a free port over a temporary
SQLite file, then runs the bash blocks between the walkthrough markers exactly as written,
except that the documented base URL is pointed at that port. If the README rots, this fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.realserver import running_server
from tests.server.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"


def walkthrough_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, f"sqlite:///{tmp_path / 'readme.db'}", secret=SECRET) as base:
        yield base


def test_readme_has_the_walkthrough() -> None:
    blocks = walkthrough_blocks()
    script = "\n".join(blocks)
    assert len(blocks) >= 4
    assert "convostore token --user" in script
    assert DOCUMENTED_URL in script
    for path in ("/v1/conversations", "/messages", "/messages/batch", "/history"):
        assert path in script


def test_readme_walkthrough_runs(server: str) -> None:
    script = "\n".join(walkthrough_blocks()).replace(DOCUMENTED_URL, server)
    checks = 'echo\necho "RESULT $CONV"\n'
    env = {**os.environ, "JWT_SECRET_KEY": SECRET}  # what the newcomer pasted
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script + "\n" + checks],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    conv_id = lines[-1].split()[1]
    assert conv_id.startswith("conv_")
    # curl prints no trailing newline: the history is the last JSON document on that line.
    history = json.loads(lines[-2][lines[-2].rindex('{"conversation_id"') :])
    assert history == {
        "conversation_id": conv_id,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 6 x 7?"},
            {"role": "assistant", "content": "42."},
            {"role": "user", "content": "Thanks!"},
        ],
    }
    token = subprocess.run(
        [str(Path(sys.executable).parent / "convostore"), "token", "--user", "alice"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    conv = httpx.get(
        f"{server}/v1/conversations/{conv_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert (conv["title"], conv["message_count"], conv["metadata"]) == (
        "First chat",
        3,
        {"model": "gpt-4o"},
    )
