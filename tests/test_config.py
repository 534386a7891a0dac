"""Configuration: URLs as users paste them, .env files, clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from convostore.config import DEFAULT_DATABASE_URL, Settings, normalize_url
from convostore.errors import ConfigurationError, MissingExtraError, require_extra


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("postgres://u:p@host/db", "postgresql+psycopg"),
        ("postgresql://u:p@host/db?sslmode=require", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@host/db", "postgresql+psycopg"),
        ("sqlite:///chat.db", "sqlite+pysqlite"),
    ],
)
def test_pasted_urls_are_normalised(raw: str, driver: str) -> None:
    url = normalize_url(raw)
    assert url.drivername == driver
    assert url.database in {"db", "chat.db"}


def test_neon_style_query_is_kept() -> None:
    url = normalize_url(
        "postgres://u:p@ep-x.neon.tech/neondb?sslmode=require&channel_binding=require"
    )
    assert url.query == {"sslmode": "require", "channel_binding": "require"}
    assert url.host == "ep-x.neon.tech"


def test_async_urls_use_async_drivers() -> None:
    assert normalize_url("sqlite:///x.db", is_async=True).drivername == "sqlite+aiosqlite"
    assert normalize_url("postgres://u@h/db", is_async=True).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("raw", ["mysql://u@h/db", "not a url"])
def test_unsupported_urls_are_rejected_by_name(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        normalize_url(raw)


def test_default_is_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert Settings().database_url == DEFAULT_DATABASE_URL == "sqlite:///convostore.db"


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgres://u@h/db\nJWT_SECRET_KEY=s3cret\nJWT_ALGORITHM=HS512\n"
    )
    settings = Settings()
    assert settings.database_url == "postgres://u@h/db"
    assert settings.jwt_secret_key is not None
    assert settings.jwt_secret_key.get_secret_value() == "s3cret"
    assert settings.jwt_algorithm == "HS512"


def test_environment_beats_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///from-file.db\n")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-env.db")
    assert Settings().database_url == "sqlite:///from-env.db"


def test_missing_extra_names_the_extra() -> None:
    with pytest.raises(MissingExtraError) as info:
        require_extra("convostore_no_such_module", "server", "The REST service")
    assert "pip install 'convostore[server]'" in str(info.value)
    assert isinstance(info.value, ImportError)
