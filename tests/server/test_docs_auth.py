"""docs/rest.md, "Authentication", against a real ``convostore serve``: the API-key example
runs as written, and a server configured with only a JWKS starts and takes the provider's
tokens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.realserver import running_server
from tests.server.conftest import SECRET
from tests.server.test_jwks import AUDIENCE, ISSUER, Key, Provider

ROOT = Path(__file__).resolve().parents[2]
REST = ROOT / "docs" / "rest.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"


def auth_blocks() -> list[str]:
    text = REST.read_text(encoding="utf-8")
    section = text.split("## Authentication\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def test_every_set_up_has_its_example() -> None:
    blocks = auth_blocks()
    assert len(blocks) == 3
    assert "JWT_SECRET_KEY" in blocks[0]
    assert "CONVOSTORE_JWKS_URL" in blocks[1]
    assert "keys create" in blocks[2] and "X-Convostore-User" in blocks[2]


def test_the_api_key_example_runs(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'docs.db'}"
    with running_server(tmp_path, db, secret=SECRET) as base:
        script = auth_blocks()[2].replace(DOCUMENTED_URL, base)
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "DATABASE_URL": db, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script.replace("curl ", "curl -fsS ")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert '{"data":[],"has_more":false,"next_cursor":null}' in done.stdout
        assert "chat-backend" in done.stdout and "revoked" in done.stdout
        log = "\n".join(p.read_text() for p in tmp_path.glob("server-*.log"))
    # The request made for alice is in the server's log, with the key's label.
    assert "API key 'chat-backend' (id 1) acting for user 'alice': GET /v1/conversations" in log


def test_a_server_with_only_a_jwks(tmp_path: Path) -> None:
    provider = Provider()
    provider.thread.start()
    try:
        key = Key("docs-1", "ES256")
        provider.publish(key)
        env = {
            "JWT_SECRET_KEY": "",
            "CONVOSTORE_JWKS_URL": provider.url,
            "CONVOSTORE_JWT_ISSUER": ISSUER,
            "CONVOSTORE_JWT_AUDIENCE": AUDIENCE,
        }
        db = f"sqlite:///{tmp_path / 'jwks.db'}"
        with running_server(tmp_path, db, secret="", env=env) as base:
            headers = {"Authorization": f"Bearer {key.token({'sub': 'zoe'})}"}
            created = httpx.post(f"{base}/v1/conversations", json={}, headers=headers)
            assert created.status_code == 201, created.text
            assert created.json()["user_id"] == "zoe"
    finally:
        provider.server.shutdown()
        provider.server.server_close()
