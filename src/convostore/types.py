"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

#: JSON everywhere, JSONB (binary, indexable) on PostgreSQL. Python ``None`` is SQL NULL
#: (not the JSON text ``null``), so ``IS NULL`` finds it and nothing is serialised for it.
JSONType: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite a naive UTC string that sorts correctly.

    Values always come back timezone-aware in UTC, whatever the server's or the process's
    time zone; naive datetimes handed in are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            # SQLite has no time zones: store UTC without an offset so that the text of
            # two timestamps compares like the instants (keyset pagination relies on it).
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    # Every message written and read converts one timestamp. The two methods below give
    # the same values as process_bind_param / process_result_value followed by the
    # driver-level DateTime processing, in one call per value and without
    # datetime.replace() (about 1 us each, more than the rest of a row's conversion).
    # On SQLite they reproduce the DATETIME text format exactly, so rows written by plain
    # SQLAlchemy and by convostore compare and sort alike (tested in tests/test_types.py).

    # The generated row readers (``_sql._model_reader``) write a result processor's
    # ``inline`` expression into their loop instead of calling it, one call less per value:
    # ``{v}`` is the (non-NULL) value, ``{p}`` the processor itself; names it uses are in
    # ``inline_names``. An inline expression may raise ValueError only where the
    # processor would give its value another way: the reader then calls the processor.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        if dialect.name != "sqlite":
            return lambda value: None if value is None else as_utc(value)

        def to_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            # "YYYY-MM-DD HH:MM:SS.ffffff", SQLAlchemy's SQLite format, with the +00:00 cut.
            return as_utc(value).isoformat(" ", "microseconds")[:26]

        return to_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        if dialect.name != "sqlite":  # psycopg: aware datetimes in the session's time zone

            def in_utc(value: datetime | None) -> datetime | None:
                return value if value is None or value.tzinfo is UTC else as_utc(value)

            in_utc.inline = "{v} if {v}.tzinfo is UTC else {p}({v})"  # type: ignore[attr-defined]
            in_utc.inline_names = {"UTC": UTC}  # type: ignore[attr-defined]
            return in_utc
        parse = DateTime().dialect_impl(dialect).result_processor(dialect, coltype)
        assert parse is not None
        fromisoformat = datetime.fromisoformat

        def from_text(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                fast = fromisoformat(value + "+00:00")  # tzinfo: the UTC singleton
                if fast.tzinfo is UTC:  # (a date alone reads "+00:00" as its time)
                    return fast
            except ValueError:  # a text this format does not cover: SQLAlchemy's parser
                pass
            parsed = parse(value)
            return None if parsed is None else as_utc(parsed)

        from_text.inline = (  # type: ignore[attr-defined]
            "d if (d := fromisoformat({v} + '+00:00')).tzinfo is UTC else {p}({v})"
        )
        from_text.inline_names = {  # type: ignore[attr-defined]
            "fromisoformat": fromisoformat,
            "UTC": UTC,
        }
        return from_text


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC already)."""
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)
