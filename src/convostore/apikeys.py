"""API keys: service credentials for the REST API, stored hashed.

    from convostore import Store
    from convostore.apikeys import create_api_key, list_api_keys, revoke_api_key

    with Store(url) as store:
        key, info = create_api_key(store, label="chat-backend", can_act_for_users=True)
        print(key)  # shown once: only its SHA-256 is stored

A key is ``csk_`` and 256 random bits (URL-safe base64). Being random, it needs no slow
password hash: the SHA-256 of the key is its stored, uniquely indexed identity, so checking
a request's key is one index lookup. The CLI is ``convostore keys create|list|revoke``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from convostore._ops import Mode, Tx, operation
from convostore.errors import NotFoundError, ValidationError
from convostore.models import MAX_TITLE_LENGTH, api_keys_table
from convostore.schemas import validate_user_id
from convostore.types import utcnow

if TYPE_CHECKING:  # convostore.store imports this module (to register its operations)
    from convostore.store import AsyncStore, Store

__all__ = [
    "KEY_PREFIX",
    "ApiKeyInfo",
    "api_key_by_hash",
    "create_api_key",
    "generate_key",
    "hash_key",
    "list_api_keys",
    "looks_like_key",
    "revoke_api_key",
]

#: Every key starts with this, so a bearer credential is told apart from a JWT at a glance.
KEY_PREFIX = "csk_"
_SHOWN = len(KEY_PREFIX) + 8  # characters of the key kept in clear, to tell keys apart

T = api_keys_table
_COLUMNS = (
    T.c.id,
    T.c.prefix,
    T.c.label,
    T.c.user_id,
    T.c.can_act_for_users,
    T.c.created_at,
    T.c.last_used_at,
    T.c.revoked_at,
)


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """Everything stored about a key except its hash."""

    id: int
    prefix: str
    label: str
    user_id: str | None
    can_act_for_users: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _info(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(*row)


def generate_key() -> str:
    """A new random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored identity of ``key``: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(credential: str) -> bool:
    """An API key rather than a JWT (which never starts with ``csk_``: it is base64 JSON)."""
    return credential.startswith(KEY_PREFIX)


@operation(Mode.STATEMENT)
def insert_api_key(
    tx: Tx, key_hash: str, prefix: str, label: str, user_id: str | None, can_act_for_users: bool
) -> ApiKeyInfo:
    stmt = (
        insert(T)
        .values(
            key_hash=key_hash,
            prefix=prefix,
            label=label,
            user_id=user_id,
            can_act_for_users=can_act_for_users,
            created_at=utcnow(),
        )
        .returning(*_COLUMNS)
    )
    return _info(tx.conn.execute(stmt).one())


@operation(Mode.READ, bounded=True)
def api_key_by_hash(tx: Tx, key_hash: str) -> ApiKeyInfo | None:
    """The key with this hash, revoked or not; ``None`` when unknown."""
    row = tx.conn.execute(select(*_COLUMNS).where(T.c.key_hash == key_hash)).first()
    return None if row is None else _info(row)


@operation(Mode.READ)
def select_api_keys(tx: Tx, include_revoked: bool) -> list[ApiKeyInfo]:
    stmt = select(*_COLUMNS).order_by(T.c.id)
    if not include_revoked:
        stmt = stmt.where(T.c.revoked_at.is_(None))
    return [_info(row) for row in tx.conn.execute(stmt)]


@operation(Mode.STATEMENT)
def mark_api_key_revoked(tx: Tx, key_id: int) -> ApiKeyInfo | None:
    stmt = (
        update(T)
        .where(T.c.id == key_id, T.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(*_COLUMNS)
    )
    row = tx.conn.execute(stmt).first()
    if row is None:  # unknown, or revoked before: report it as it is
        row = tx.conn.execute(select(*_COLUMNS).where(T.c.id == key_id)).first()
    return None if row is None else _info(row)


@operation(Mode.STATEMENT)
def touch_api_key(tx: Tx, key_id: int, at: datetime) -> None:
    tx.conn.execute(update(T).where(T.c.id == key_id).values(last_used_at=at))


def create_api_key(
    store: Store, *, label: str, user_id: str | None = None, can_act_for_users: bool = False
) -> tuple[str, ApiKeyInfo]:
    """Store a new key and return it (the only time it is ever available) with its record.

    ``user_id``: the user the key acts as; ``can_act_for_users``: it may name any user per
    request instead. A key needs at least one of the two.
    """
    label = label.strip() if isinstance(label, str) else ""
    if not label:
        raise ValidationError("label", "must not be empty")
    if len(label) > MAX_TITLE_LENGTH:
        raise ValidationError("label", f"must be at most {MAX_TITLE_LENGTH} characters")
    if user_id is not None:
        validate_user_id(user_id)
    elif not can_act_for_users:
        raise ValidationError("user_id", "a key needs a user, or the right to act for users")
    key = generate_key()
    info = store._runner.call(
        insert_api_key, hash_key(key), key[:_SHOWN], label, user_id, can_act_for_users
    )
    return key, info


def list_api_keys(store: Store, *, include_revoked: bool = False) -> list[ApiKeyInfo]:
    """Every key (oldest first), without the revoked ones unless asked."""
    return store._runner.call(select_api_keys, include_revoked)


def revoke_api_key(store: Store, key_id: int) -> ApiKeyInfo:
    """Revoke a key at once (the next request with it is a 401); idempotent."""
    info = store._runner.call(mark_api_key_revoked, key_id)
    if info is None:
        raise NotFoundError("api key", key_id)
    return info


async def find_key(store: AsyncStore, key: str) -> ApiKeyInfo | None:
    """The record of a presented key (one lookup by its hash's unique index)."""
    return await store._call(api_key_by_hash, hash_key(key))


async def mark_used(store: AsyncStore, key_id: int, at: datetime) -> None:
    """Record the key's last use (the server calls this at most once a minute per key)."""
    await store._call(touch_api_key, key_id, at)
