"""Settings from the environment and a ``.env`` file, and database URL normalisation.

``DATABASE_URL`` is accepted as users paste it (``postgres://...`` from Heroku/Neon,
``postgresql://...``, ``sqlite:///file.db``) and normalised to the drivers convostore uses:
psycopg 3 for PostgreSQL (sync and async), pysqlite/aiosqlite for SQLite.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from convostore.errors import ConfigurationError, ConvostoreError
from convostore.retention import normalize_retention

DEFAULT_DATABASE_URL = "sqlite:///convostore.db"


class Settings(BaseSettings):
    """Everything convostore reads from the environment (names as the seeds use them)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "CONVOSTORE_DATABASE_URL"),
    )
    database_direct_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_DIRECT_URL", "CONVOSTORE_DATABASE_DIRECT_URL"),
        description="A direct (unpooled) connection to the primary, for migrations when "
        "DATABASE_URL goes through a transaction pooler (Neon's `DIRECT_URL`).",
    )
    database_read_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("DATABASE_READ_URL", "CONVOSTORE_DATABASE_READ_URL"),
        description="Read replicas (comma-separated): pure reads go there, writes and "
        "reads that must see this store's own recent writes go to the primary.",
    )
    pgbouncer: Literal["auto", "true", "false"] = Field(
        default="auto",
        validation_alias="CONVOSTORE_PGBOUNCER",
        description="`true`: every PostgreSQL URL goes through a transaction pooler (no "
        "server-side prepared statements); `false`: none does; `auto`: a URL with "
        "`?pgbouncer=true` or a Neon `-pooler.` / Supabase `pooler.supabase.com` host does.",
    )
    replica_wait_timeout: float = Field(
        default=0.5,
        ge=0,
        le=60,
        validation_alias="CONVOSTORE_REPLICA_WAIT_TIMEOUT",
        description="Seconds a read may wait for a replica to replay the store's own "
        "latest write for that user before it is sent to the primary instead.",
    )
    jwt_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("JWT_SECRET_KEY", "CONVOSTORE_JWT_SECRET_KEY")
    )
    jwt_algorithm: str = Field(
        default="HS256", validation_alias=AliasChoices("JWT_ALGORITHM", "CONVOSTORE_JWT_ALGORITHM")
    )
    max_content_length: int = Field(
        default=10_000, gt=0, validation_alias="CONVOSTORE_MAX_CONTENT_LENGTH"
    )
    stream_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        validation_alias="CONVOSTORE_STREAM_LEASE_SECONDS",
        description="A streaming reply whose writer sent nothing (no delta) for this long "
        "reads as `interrupted`, and a new reply may start in its conversation.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, gt=0, validation_alias="CONVOSTORE_MAX_BODY_BYTES"
    )
    max_import_bytes: int = Field(
        default=512 * 1024 * 1024,
        gt=0,
        validation_alias="CONVOSTORE_MAX_IMPORT_BYTES",
        description="Largest upload `POST /v1/import` accepts (the export is streamed to a "
        "temporary file, never held in memory); other routes keep `max_body_bytes`.",
    )
    sqlite_synchronous: Literal["full", "normal", "extra"] = Field(
        default="full",
        validation_alias="CONVOSTORE_SQLITE_SYNCHRONOUS",
        description="SQLite's PRAGMA synchronous in WAL mode: `full` (default) makes every "
        "acknowledged commit survive power loss and OS crashes; `normal` skips the fsync "
        "per commit, so the last commits can be lost on power loss (never corrupted).",
    )
    users_table: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        validation_alias="CONVOSTORE_USERS_TABLE",
        description="The host app's users table (its `id` column identifies users); "
        "unset: convostore keeps its own `convostore_users`.",
    )

    search_config: str = Field(
        default="simple",
        pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$",
        validation_alias="CONVOSTORE_SEARCH_CONFIG",
        description="PostgreSQL text-search configuration of full-text search (`simple`: "
        "every language alike, no stemming). Read when the search migration builds the "
        "index and when searching: set it before migrating (`db verify` checks they match).",
    )

    # --- authentication (see docs/rest.md, "Authentication") ---
    jwks_url: str | None = Field(
        default=None,
        validation_alias="CONVOSTORE_JWKS_URL",
        description="Your identity provider's JWKS URL: tokens signed with its keys "
        "(RS256, ES256, EdDSA) are accepted. `JWT_SECRET_KEY` is then optional.",
    )
    jwks_algorithms: str = Field(
        default="RS256,ES256,EdDSA",
        validation_alias="CONVOSTORE_JWKS_ALGORITHMS",
        description="Comma-separated algorithms accepted for JWKS keys (asymmetric only). "
        "Accepted algorithms come from here, never from the token.",
    )
    jwks_cache_seconds: float = Field(
        default=300, gt=0, validation_alias="CONVOSTORE_JWKS_CACHE_SECONDS"
    )
    jwks_refresh_cooldown: float = Field(
        default=30,
        ge=0,
        validation_alias="CONVOSTORE_JWKS_REFRESH_COOLDOWN",
        description="A token with an unknown `kid` refetches the JWKS at most once per this "
        "many seconds (key rotation without letting bad tokens hammer the provider).",
    )
    jwt_issuer: str | None = Field(default=None, validation_alias="CONVOSTORE_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, validation_alias="CONVOSTORE_JWT_AUDIENCE")
    jwt_user_claim: str = Field(
        default="sub", min_length=1, validation_alias="CONVOSTORE_JWT_USER_CLAIM"
    )
    jwt_leeway: float = Field(default=0, ge=0, validation_alias="CONVOSTORE_JWT_LEEWAY")
    jwt_require_exp: bool = Field(
        default=True,
        validation_alias="CONVOSTORE_JWT_REQUIRE_EXP",
        description="Refuse tokens without `exp`. `false` is for development only.",
    )
    jwt_max_lifetime: int = Field(
        default=86_400,
        gt=0,
        validation_alias="CONVOSTORE_JWT_MAX_LIFETIME",
        description="Refuse tokens whose `exp` is more than this many seconds after `iat` "
        "or after now.",
    )
    # --- rate limits: "N/second|minute|hour|day"; "" turns one off ---
    rate_limit_user_reads: str = Field(
        default="1200/minute", validation_alias="CONVOSTORE_RATE_LIMIT_USER_READS"
    )
    rate_limit_user_writes: str = Field(
        default="1200/minute", validation_alias="CONVOSTORE_RATE_LIMIT_USER_WRITES"
    )
    rate_limit_key_reads: str = Field(
        default="12000/minute", validation_alias="CONVOSTORE_RATE_LIMIT_KEY_READS"
    )
    rate_limit_key_writes: str = Field(
        default="12000/minute", validation_alias="CONVOSTORE_RATE_LIMIT_KEY_WRITES"
    )
    rate_limit_storage: str = Field(
        default="memory://",
        validation_alias="CONVOSTORE_RATE_LIMIT_STORAGE",
        description="Where the counters live (a `limits` storage URI): `memory://` is per "
        "process; `redis://host:6379` shares them between processes.",
    )

    retention: str = Field(
        default="none",
        validation_alias="CONVOSTORE_RETENTION",
        description="How long a conversation lives after its last activity (`30d`, `12h`, "
        "`90m`, `2w`; `none`: forever), unless its user's or its own policy says otherwise.",
    )
    temporary_retention: str = Field(
        default="24h",
        validation_alias="CONVOSTORE_TEMPORARY_RETENTION",
        description="The same for temporary conversations (`temporary=True` at creation).",
    )

    purge_every: int | None = Field(
        default=None,
        gt=0,
        validation_alias="CONVOSTORE_PURGE_EVERY",
        description="`convostore serve`: purge expired conversations in the background every "
        "this many minutes (unset: never; run `convostore purge` from cron instead).",
    )

    @field_validator("retention", "temporary_retention")
    @classmethod
    def _retention_policy(cls, value: str, info: ValidationInfo) -> str:
        try:
            return normalize_retention(value, str(info.field_name))
        except ConvostoreError as exc:
            raise ValueError(exc.message) from None

    @field_validator(
        "users_table",
        "jwks_url",
        "jwt_issuer",
        "jwt_audience",
        "database_direct_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_read_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("pgbouncer", mode="before")
    @classmethod
    def _boolish(cls, value: object) -> object:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false",
                    "off": "false", "": "auto"}.get(lowered, lowered)  # fmt: skip
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


#: The URL query flag that marks a pooled connection string (Prisma's and Neon's spelling).
POOLER_FLAG = "pgbouncer"
_TRUE = {"true", "1", "yes", "on"}


def uses_pooler(url: str | URL, setting: str | None = None) -> bool:
    """Whether ``url`` reaches PostgreSQL through a transaction-mode pooler (PgBouncer).

    ``CONVOSTORE_PGBOUNCER`` decides when it is ``true`` or ``false``; on ``auto`` (the
    default) the URL does: ``?pgbouncer=true`` (the flag Prisma and Neon document; it is
    removed before the driver sees the URL), else a Neon pooled host (``ep-...-pooler.``)
    or Supabase's pooler (``*.pooler.supabase.com``). A pooler cannot be recognised
    from the server's side of the protocol (it forwards the server's own parameters),
    so the URL has to say it.

    >>> uses_pooler("postgresql://u@ep-x-pooler.eu-central-1.aws.neon.tech/db", "auto")
    True
    >>> uses_pooler("postgresql://u@db.example.com/db?pgbouncer=true", "false")
    False
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        return False
    setting = setting if setting is not None else get_settings().pgbouncer
    if setting in ("true", "false"):
        return setting == "true"
    flag = parsed.query.get(POOLER_FLAG)
    if flag is not None:
        return (flag if isinstance(flag, str) else flag[-1]).lower() in _TRUE
    host = (parsed.host or "").lower()
    return "-pooler." in host or host.endswith(".pooler.supabase.com")


_PG_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "psycopg"}


def normalize_url(url: str | URL, *, is_async: bool = False) -> URL:
    """Map a pasted URL to the driver convostore uses; reject kinds we do not support.

    >>> normalize_url("postgres://u@h/db").drivername
    'postgresql+psycopg'
    >>> normalize_url("sqlite:///x.db", is_async=True).drivername
    'sqlite+aiosqlite'
    """
    if isinstance(url, str):
        raw = url.strip()
        # SQLAlchemy does not know the "postgres://" alias that hosting providers hand out.
        if raw.startswith("postgres://"):
            raw = "postgresql://" + raw[len("postgres://") :]
        try:
            parsed = make_url(raw)
        except ArgumentError as exc:
            raise ConfigurationError(f"DATABASE_URL: not a valid database URL ({exc})") from exc
    else:
        parsed = url
    backend = parsed.get_backend_name()
    if backend == "postgresql" or parsed.drivername in _PG_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if is_async else "sqlite+pysqlite")
    raise ConfigurationError(
        f"DATABASE_URL: unsupported database {backend!r}; use postgresql:// or sqlite:///"
    )
