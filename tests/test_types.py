"""UTCDateTime: the fused processors give what the generic TypeDecorator chain gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from convostore.types import UTCDateTime

SQLITE = sqlite.dialect()
PG = postgresql.psycopg.dialect()
TYPE = UTCDateTime()

zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
# Hypothesis takes naive bounds (a day inside the range, so every offset stays valid).
LOW, HIGH = datetime(1, 1, 2), datetime(9999, 12, 30)  # noqa: DTZ001
moments = st.datetimes(min_value=LOW, max_value=HIGH, timezones=zones)


def _generic_bind(value: datetime, dialect: Dialect) -> object:
    """What SQLAlchemy would send: process_bind_param, then DateTime's own processor."""
    inner = DateTime().dialect_impl(dialect).bind_processor(dialect)
    processed = TYPE.process_bind_param(value, dialect)
    return inner(processed) if inner else processed


def _processors(dialect: Dialect) -> tuple[object, object]:
    impl = TYPE.dialect_impl(dialect)
    return impl.bind_processor(dialect), impl.result_processor(dialect, None)


@given(moments)
def test_sqlite_text_is_sqlalchemys_format_and_reads_back_as_the_same_instant(
    value: datetime,
) -> None:
    bind, result = _processors(SQLITE)
    text = bind(value)
    assert text == _generic_bind(value, SQLITE)
    back = result(text)
    assert back.tzinfo is UTC
    assert back == (value if value.tzinfo else value.replace(tzinfo=UTC))


@given(moments)
def test_postgresql_values_are_aware_utc_for_the_same_instant(value: datetime) -> None:
    bind, result = _processors(PG)
    sent = bind(value)
    assert sent.tzinfo is UTC
    assert sent == _generic_bind(value, PG)
    assert result(value).tzinfo is UTC
    assert result(value) == sent


@pytest.mark.parametrize(
    "text",
    ["2026-01-02 03:04:05", "2026-01-02 03:04:05.5", "2026-01-02T03:04:05.123456", "2026-01-02"],
)
def test_sqlite_reads_other_texts_of_the_same_moment(text: str) -> None:
    _, result = _processors(SQLITE)
    generic = DateTime().dialect_impl(SQLITE).result_processor(SQLITE, None)
    assert generic is not None
    assert result(text).tzinfo is UTC
    assert result(text) == generic(text).replace(tzinfo=UTC)
    # The row readers' inlined form of the same conversion (``_sql._model_reader``).
    assert _inlined(result, text) == result(text)


def _inlined(processor: Any, value: object) -> object:
    source = processor.inline.format(v="value", p="processor")
    names = {**processor.inline_names, "processor": processor, "value": value}
    return eval(source, names)  # noqa: S307


@given(moments)
def test_inlined_conversions_give_what_the_processors_give(value: datetime) -> None:
    _, sqlite_result = _processors(SQLITE)
    bind, _ = _processors(SQLITE)
    text = bind(value)
    assert _inlined(sqlite_result, text) == sqlite_result(text)
    assert _inlined(sqlite_result, text).tzinfo is UTC
    _, pg_result = _processors(PG)
    for shown in (value, value.astimezone(UTC)) if value.tzinfo else (value.replace(tzinfo=UTC),):
        assert _inlined(pg_result, shown) == pg_result(shown)
        assert _inlined(pg_result, shown).tzinfo is UTC


def test_none_stays_none() -> None:
    for dialect in (SQLITE, PG):
        bind, result = _processors(dialect)
        assert bind(None) is None and result(None) is None
