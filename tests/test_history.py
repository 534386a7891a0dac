"""Unit tests of the history window (``convostore.history``), without a database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convostore.history import approximate_tokens, select_window, system_message
from convostore.schemas import ChatMessage, MessagePublic

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def make(position: int, role: str, content: str = "x", **extra: Any) -> MessagePublic:
    return MessagePublic(
        id=position,
        conversation_id=1,
        user_id="u",
        position=position,
        role=role,
        content=content,
        created_at=NOW,
        **extra,
    )


def conversation(*specs: tuple[str, Any]) -> list[MessagePublic]:
    """Oldest-first messages from ("user", "text") / ("call", ["a", "b"]) / ("tool", "a")."""
    out: list[MessagePublic] = []
    for pos, (kind, arg) in enumerate(specs, start=1):
        if kind == "call":
            calls = [
                {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                for i in arg
            ]
            out.append(make(pos, "assistant", "", tool_calls=calls))
        elif kind == "tool":
            out.append(make(pos, "tool", f"result {arg}", tool_call_id=arg))
        else:
            out.append(make(pos, kind, arg))
    return out


def newest_first(messages: list[MessagePublic]) -> list[MessagePublic]:
    return list(reversed(messages))


def contents(window: list[ChatMessage]) -> list[str | None]:
    return [m["content"] for m in window]


def one(_: ChatMessage) -> int:
    return 1


TOOLS = conversation(
    ("user", "q1"),
    ("call", ["a", "b"]),
    ("tool", "a"),
    ("tool", "b"),
    ("assistant", "answer"),
    ("user", "q2"),
)


def test_no_limits_returns_everything_oldest_first() -> None:
    window = select_window(newest_first(TOOLS))
    assert contents(window) == ["q1", None, "result a", "result b", "answer", "q2"]
    assert window[1]["tool_calls"][0]["id"] == "a"
    assert window[2] == {"role": "tool", "content": "result a", "tool_call_id": "a"}


def test_empty_input() -> None:
    assert select_window([]) == []
    assert select_window([], max_messages=0, max_tokens=0) == []


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (0, []),
        (1, ["q2"]),
        (2, ["answer", "q2"]),
        (3, ["answer", "q2"]),
        (4, ["answer", "q2"]),
        (5, [None, "result a", "result b", "answer", "q2"]),
        (6, ["q1", None, "result a", "result b", "answer", "q2"]),
    ],
)
def test_max_messages_keeps_tool_units_whole(limit: int, expected: list[str | None]) -> None:
    assert contents(select_window(newest_first(TOOLS), max_messages=limit)) == expected


@pytest.mark.parametrize(
    ("budget", "expected"), [(0, []), (1, ["q2"]), (4, ["answer", "q2"]), (5, 5), (99, 6)]
)
def test_max_tokens_keeps_tool_units_whole(budget: int, expected: list[str] | int) -> None:
    window = select_window(newest_first(TOOLS), max_tokens=budget, token_counter=one)
    if isinstance(expected, int):
        assert len(window) == expected
    else:
        assert contents(window) == expected


def test_both_limits_apply() -> None:
    window = select_window(newest_first(TOOLS), max_messages=6, max_tokens=4, token_counter=one)
    assert contents(window) == ["answer", "q2"]
    window = select_window(newest_first(TOOLS), max_messages=1, max_tokens=100, token_counter=one)
    assert contents(window) == ["q2"]


def test_a_window_stops_at_the_first_unit_that_does_not_fit() -> None:
    """A smaller older message is not pulled in past a gap: the window stays contiguous."""
    msgs = conversation(("user", "tiny"), ("user", "x" * 400), ("user", "last"))
    window = select_window(newest_first(msgs), max_tokens=20)
    assert contents(window) == ["last"]


def test_budget_smaller_than_one_message() -> None:
    msgs = conversation(("user", "x" * 100))
    assert (
        select_window(newest_first(msgs), max_tokens=approximate_tokens({"content": "x" * 100}) - 1)
        == []
    )
    assert (
        len(
            select_window(newest_first(msgs), max_tokens=approximate_tokens({"content": "x" * 100}))
        )
        == 1
    )


def test_orphan_tool_results_are_never_sent() -> None:
    msgs = conversation(
        ("tool", "lost"),
        ("user", "q"),
        ("call", ["a"]),
        ("tool", "a"),
        ("tool", "unknown"),
        ("user", "after"),
        ("tool", "late"),
    )
    window = select_window(newest_first(msgs))
    assert [(m["role"], m.get("tool_call_id")) for m in window] == [
        ("user", None),
        ("assistant", None),
        ("tool", "a"),
        ("user", None),
    ]


def test_a_window_never_starts_on_a_tool_result() -> None:
    msgs = conversation(("call", ["a"]), ("tool", "a"), ("user", "q"))
    for limit in range(4):
        window = select_window(newest_first(msgs), max_messages=limit)
        assert not window or window[0]["role"] != "tool"


def test_custom_token_counter_sees_chat_format() -> None:
    seen: list[ChatMessage] = []

    def counter(message: ChatMessage) -> int:
        seen.append(message)
        return 2

    window = select_window(newest_first(TOOLS), max_tokens=4, token_counter=counter)
    assert contents(window) == ["answer", "q2"]
    assert {"role": "user", "content": "q2"} in seen
    assert all(m["role"] != "tool" or "tool_call_id" in m for m in seen)


def test_input_is_consumed_lazily() -> None:
    pulled = 0

    def stream() -> Iterator[MessagePublic]:
        nonlocal pulled
        for m in newest_first(conversation(*[("user", str(i)) for i in range(1000)])):
            pulled += 1
            yield m

    window = select_window(stream(), max_messages=3)
    assert contents(window) == ["997", "998", "999"]
    assert pulled <= 5


def test_approximate_tokens() -> None:
    assert approximate_tokens({"role": "user", "content": ""}) == 4
    assert approximate_tokens({"role": "user", "content": "abcd"}) == 5
    assert approximate_tokens({"role": "user", "content": "abcde"}) == 6
    assert approximate_tokens({"role": "assistant", "content": None}) == 4
    with_calls = {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]}
    assert approximate_tokens(with_calls) > 4


def test_system_message() -> None:
    assert system_message("be brief") == {"role": "system", "content": "be brief"}


# ------------------------------------------------------------------- property test

_step = st.one_of(
    st.tuples(
        st.sampled_from(["user", "assistant", "system"]), st.text("ab ", min_size=1, max_size=30)
    ),
    st.tuples(
        st.just("call"), st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)
    ),
    st.tuples(st.just("tool"), st.sampled_from("abcz")),
)


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(_step, max_size=25),
    max_messages=st.none() | st.integers(0, 30),
    max_tokens=st.none() | st.integers(0, 150),
)
def test_window_invariants(
    specs: list[tuple[str, Any]], max_messages: int | None, max_tokens: int | None
) -> None:
    msgs = conversation(*specs)
    window = select_window(newest_first(msgs), max_messages=max_messages, max_tokens=max_tokens)
    if max_messages is not None:
        assert len(window) <= max_messages
    if max_tokens is not None:
        assert sum(approximate_tokens(m) for m in window) <= max_tokens
    # Never starts on a tool result; every tool result belongs to the call just before it.
    open_calls: set[str] = set()
    for m in window:
        if m["role"] == "tool":
            assert m["tool_call_id"] in open_calls
        else:
            open_calls = {c["id"] for c in m.get("tool_calls") or []}
    # The window is the newest part of the conversation with orphans left out: it equals
    # the unlimited window's tail, so nothing in between was skipped.
    full = select_window(newest_first(msgs))
    assert full[len(full) - len(window) :] == window
    # Maximal: the next older unit of the full window would not have fitted.
    units: list[list[ChatMessage]] = []
    for m in full:
        if m["role"] == "tool":
            units[-1].append(m)
        else:
            units.append([m])
    taken = _units_in(window)
    if taken < len(units):
        nxt = units[len(units) - taken - 1]
        too_many = max_messages is not None and len(window) + len(nxt) > max_messages
        cost = sum(approximate_tokens(m) for m in window + nxt)
        too_costly = max_tokens is not None and cost > max_tokens
        assert too_many or too_costly


def _units_in(window: list[ChatMessage]) -> int:
    return sum(1 for m in window if m["role"] != "tool")
