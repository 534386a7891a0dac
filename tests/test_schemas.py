"""Input validation and output shapes (``convostore.schemas``), without a database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convostore.errors import ValidationError
from convostore.models import MessageRole
from convostore.schemas import (
    MessageCreate,
    Page,
    check_json,
    check_text,
    to_chat_message,
    validate_limit,
    validate_message,
    validate_messages,
    validate_metadata,
    validate_position,
    validate_title,
    validate_user_id,
)

LIMIT = 10_000


def field_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as err:
        fn(*args, **kwargs)
    assert err.value.rule and str(err.value).startswith(err.value.field)
    return err.value.field


def test_valid_messages() -> None:
    m = validate_message({"role": "user", "content": "hi"}, max_content_length=LIMIT)
    assert m.role is MessageRole.USER and m.tool_calls is None and m.key is None
    call = validate_message(
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]}, max_content_length=LIMIT
    )
    assert call.content == ""
    tool = validate_message(
        {"role": "tool", "content": "r", "tool_call_id": "c"}, max_content_length=LIMIT
    )
    assert tool.tool_call_id == "c"
    model = MessageCreate(role=MessageRole.SYSTEM, content="s")
    assert validate_message(model, max_content_length=LIMIT) is model


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"role": "nobody", "content": "x"}, "role"),
        ({"role": "user"}, "content"),
        ({"role": "user", "content": "  "}, "content"),
        ({"role": "user", "content": None}, "content"),
        ({"role": "assistant", "content": "", "tool_calls": None}, "content"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "tool", "content": "x", "tool_call_id": ""}, "tool_call_id"),
        ({"role": "tool", "content": "x", "tool_call_id": "c" * 256}, "tool_call_id"),
        ({"role": "system", "content": "x", "tool_call_id": "c"}, "tool_call_id"),
        ({"role": "tool", "content": "x", "tool_call_id": "c", "tool_calls": [{}]}, "tool_calls"),
        ({"role": "assistant", "content": "x", "tool_calls": "nope"}, "tool_calls"),
        ({"role": "user", "content": "x", "key": "k" * 256}, "key"),
        ({"role": "user", "content": "x", "surprise": True}, "surprise"),
        ({"role": "user", "content": "x" * (LIMIT + 1)}, "content"),
        ({"role": "user", "content": "x\x00"}, "content"),
        ({"role": "user", "content": "\ud83d"}, "content"),
        ({"role": "user", "content": "x", "metadata": {"a": "\x00"}}, "metadata"),
        ({"role": "user", "content": "x", "metadata": {"a": float("inf")}}, "metadata"),
        ({"role": "user", "content": "x", "metadata": {"a": object()}}, "metadata"),
    ],
)
def test_invalid_message_names_the_field(data: dict[str, Any], field: str) -> None:
    assert field_of(validate_message, data, max_content_length=LIMIT) == field
    assert field_of(
        validate_messages, [{"role": "user", "content": "ok"}, data], max_content_length=LIMIT
    ) == (f"messages[1].{field}")


def test_content_limit_is_inclusive() -> None:
    assert validate_message({"role": "user", "content": "é" * LIMIT}, max_content_length=LIMIT)
    assert (
        field_of(validate_message, {"role": "user", "content": "a" * 6}, max_content_length=5)
        == "content"
    )


def test_validate_messages_shapes() -> None:
    assert validate_messages([], max_content_length=LIMIT) == []
    for bad in ("text", b"bytes", {"role": "user", "content": "x"}):
        assert field_of(validate_messages, bad, max_content_length=LIMIT) == "messages"
    assert field_of(validate_messages, [42], max_content_length=LIMIT) == "messages[0]"
    dup = [
        {"role": "user", "content": "a", "key": "k"},
        {"role": "user", "content": "b", "key": "k"},
    ]
    assert field_of(validate_messages, dup, max_content_length=LIMIT) == "messages.key"


def test_text_and_json_checks() -> None:
    check_text("f", "plain ✓ 😀")
    assert field_of(check_text, "f", "a\x00") == "f"
    assert field_of(check_text, "f", "\udc00") == "f"
    check_json("j", None)
    check_json("j", {"a": [1, 2.5, None, True, "😀"], "b": "\\u0000 is text"})
    assert field_of(check_json, "j", {"a": "\x00"}) == "j"
    assert field_of(check_json, "j", {"a": "\\\x00"}) == "j"
    assert field_of(check_json, "j", {"\x00": 1}) == "j"
    assert field_of(check_json, "j", [float("nan")]) == "j"
    assert field_of(check_json, "j", {"a": {1}}) == "j"


@given(st.text())
def test_check_json_rejects_exactly_the_strings_with_nul(value: str) -> None:
    if "\x00" in value:
        assert field_of(check_json, "j", {"v": value}) == "j"
    else:
        check_json("j", {"v": value, value: [value]})


def test_validate_title() -> None:
    assert validate_title(None) is None
    assert validate_title("  x  ") == "x"
    assert validate_title("t" * 255) == "t" * 255
    for bad in ("t" * 256, "", " \n ", 3, "a\x00"):
        assert field_of(validate_title, bad) == "title"


def test_validate_user_id() -> None:
    assert validate_user_id("auth0|abc") == "auth0|abc"
    assert validate_user_id("u" * 255) == "u" * 255
    for bad in ("", "  ", "u" * 256, None, 1, "a\x00"):
        assert field_of(validate_user_id, bad) == "user_id"


def test_validate_limit_and_position() -> None:
    assert validate_limit(0, maximum=10) == 0
    assert validate_limit(10, maximum=10) == 10
    for bad in (-1, 11, True, 1.5, "3", None):
        assert field_of(validate_limit, bad, maximum=10) == "limit"
    assert field_of(validate_limit, -1, maximum=10, field="n") == "n"
    assert validate_position(None, "after") is None
    assert validate_position(0, "after") == 0
    for bad in (-1, False, "1", 2.0):
        assert field_of(validate_position, bad, "before") == "before"


def test_validate_metadata() -> None:
    assert validate_metadata(None) is None
    assert validate_metadata({"a": {"b": [1]}}) == {"a": {"b": [1]}}
    for bad in ([1], "x", 1, {"k": "\x00"}):
        assert field_of(validate_metadata, bad) == "metadata"


def test_chat_format() -> None:
    assert to_chat_message("user", "hi", None, None) == {"role": "user", "content": "hi"}
    calls = [{"id": "c", "type": "function"}]
    assert to_chat_message("assistant", "", calls, None) == {
        "role": "assistant",
        "content": None,
        "tool_calls": calls,
    }
    assert to_chat_message("assistant", "thinking", calls, None)["content"] == "thinking"
    assert to_chat_message("tool", "r", None, "c") == {
        "role": "tool",
        "content": "r",
        "tool_call_id": "c",
    }


def test_page_defaults() -> None:
    page = Page[int](data=[1, 2], has_more=False)
    assert page.next_cursor is None
    assert page.model_dump() == {"data": [1, 2], "has_more": False, "next_cursor": None}


def test_construct_trusted_equals_validated_construction() -> None:
    """The fast path builds exactly what validation would, and serialises the same."""
    from datetime import UTC, datetime

    from convostore.schemas import MessagePublic, construct_trusted

    values = {
        "id": 7,
        "conversation_id": 3,
        "user_id": "alice",
        "position": 2,
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
        "tool_call_id": None,
        "metadata": {"k": "v"},
        "key": "k1",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "status": "streaming",
    }
    fast = construct_trusted(MessagePublic, dict(values))
    slow = MessagePublic(**values)
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    # Instances do not share their values.
    other = construct_trusted(MessagePublic, {**values, "id": 8})
    assert (fast.id, other.id) == (7, 8)
