"""What every seed app already has before it adds chats: its ``db.py`` (one engine).

Run by ``test_seeds.py`` in a subprocess with ``DATABASE_URL`` and, for apps with a users
table, ``CONVOSTORE_USERS_TABLE`` set, as a host app would be configured.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import create_engine

from convostore.config import normalize_url
from convostore.db import configure_engine

DATABASE_URL = os.environ["DATABASE_URL"]


def host_engine() -> Engine:
    """The app's own engine; on SQLite given convostore's set-up (foreign keys on)."""
    return configure_engine(create_engine(normalize_url(DATABASE_URL)))


def host_async_engine() -> AsyncEngine:
    engine = create_async_engine(normalize_url(DATABASE_URL, is_async=True))
    configure_engine(engine.sync_engine)
    return engine


def now_sql() -> str:
    """``NOW()`` as the seeds write it, on the database at hand."""
    return "CURRENT_TIMESTAMP" if DATABASE_URL.startswith("sqlite") else "NOW()"
