"""``convostore serve`` start-up rules and ``convostore token``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from convostore import migrate
from convostore.cli import app
from convostore.db import make_engine

SECRET = "cli-secret-" + "f" * 64
ROOT = Path(__file__).resolve().parents[2]


def test_token_mints_a_verifiable_jwt(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["token", "--user", "alice", "--expires-in", "120"], env={"JWT_SECRET_KEY": SECRET}
    )
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["token", "--user", "alice"], {}, "JWT_SECRET_KEY is not set"),
        (["token", "--user", "alice"], {"JWT_SECRET_KEY": "short"}, "at least 32 bytes"),
        (["token", "--user", ""], {"JWT_SECRET_KEY": SECRET}, "user_id"),
        (["token", "--user", "a", "--expires-in", "0"], {"JWT_SECRET_KEY": SECRET}, "expires-in"),
        (["token"], {"JWT_SECRET_KEY": SECRET}, "--user"),
    ],
)
def test_token_errors(
    runner: CliRunner, args: list[str], env: dict[str, str], message: str
) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_to_start_without_a_secret(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1
    assert "JWT_SECRET_KEY is not set" in result.output and "--dev" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before touching anything


def test_serve_refuses_a_short_secret(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve"], env={"JWT_SECRET_KEY": "too-short"})
    assert result.exit_code == 1 and "at least 32 bytes" in result.output


def test_serve_dev_generates_a_secret_and_migrates(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    started: dict[str, Any] = {}

    def fake_run(target: str, **kwargs: Any) -> None:  # stands in for the blocking server
        started.update(kwargs, target=target, secret=os.environ.get("JWT_SECRET_KEY"))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("JWT_SECRET_KEY", "")  # restored after the test
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    result = runner.invoke(
        app, ["serve", "--dev", "--migrate", "--port", "8123", "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    assert started["target"] == "convostore.server.app:create_app" and started["factory"] is True
    assert (started["host"], started["port"], started["workers"]) == ("127.0.0.1", 8123, 1)
    secret = started["secret"]
    assert secret and len(secret) == 64
    assert f"export JWT_SECRET_KEY={secret}" in result.output
    assert "convostore token --user" in result.output and "http://127.0.0.1:8123" in result.output
    engine = make_engine(url)
    assert migrate.current(engine) == migrate.head()
    engine.dispose()


def test_serve_warns_when_the_database_is_not_migrated(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = runner.invoke(app, ["serve", "--database-url", url], env={"JWT_SECRET_KEY": SECRET})
    assert result.exit_code == 0
    assert "not at the newest schema" in result.output
    assert "export JWT_SECRET_KEY" not in result.output  # the configured secret is never printed


@pytest.mark.parametrize("secret", ["", SECRET])
def test_make_run_serves_with_dev_only_without_a_secret(secret: str) -> None:
    env = {**os.environ, "JWT_SECRET_KEY": secret}
    done = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    serve = [line for line in done.stdout.splitlines() if "convostore serve" in line]
    assert len(serve) == 1
    assert "--migrate" in serve[0] and "--host 127.0.0.1 --port 8000" in serve[0]
    assert ("--dev" in serve[0]) == (not secret)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["token"],
        ["export"],
        ["import"],
        ["stats"],
        ["conversations", "list"],
        ["messages", "show"],
        ["conversations"],
        ["messages"],
    ],
)
def test_help_everywhere(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.parametrize("dev", [True, False])
def test_serve_tells_its_workers_about_dev_only_with_dev(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev: bool
) -> None:
    """The history browser's token route follows --dev, never an inherited variable."""
    import uvicorn

    from convostore.server.webui import DEV_ENV

    seen: dict[str, str | None] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.update(value=os.environ.get(DEV_ENV)))
    monkeypatch.setenv(DEV_ENV, "1")  # as if a parent process had it; restored after the test
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    args = ["serve", "--migrate", "--database-url", url] + (["--dev"] if dev else [])
    result = runner.invoke(app, args, env={"JWT_SECRET_KEY": SECRET})
    assert result.exit_code == 0, result.output
    assert seen["value"] == ("1" if dev else None)
    assert "/ui/" in result.output
