"""Alembic migrations shipped with convostore (run them with ``convostore db upgrade``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from convostore.errors import ConfigurationError

__all__ = ["host_user_id_type"]


def host_user_id_type(conn: Connection, table: str) -> sa.types.TypeEngine[Any]:
    """The type of the host's ``<table>.id``, which every ``user_id`` takes.

    The host's own migrations create that table first; without it the foreign keys cannot
    be made, and the error says which setting points there.
    """
    insp = sa.inspect(conn)
    if not insp.has_table(table):
        raise ConfigurationError(
            f"CONVOSTORE_USERS_TABLE={table}: there is no table {table!r} in this database;"
            " create your users table first (run your app's migrations), or unset the"
            " setting to let convostore keep its own"
        )
    for column in insp.get_columns(table):
        if column["name"] == "id":
            return column["type"]
    raise ConfigurationError(
        f"CONVOSTORE_USERS_TABLE={table}: the table has no 'id' column for user_id to reference"
    )
