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


# ------------------------------------------------------------ unanswered tool calls


def shape(window: list[ChatMessage]) -> list[tuple[str, Any]]:
    """(role, call ids or result id or content) per message: compact to compare."""
    out: list[tuple[str, Any]] = []
    for m in window:
        if m.get("tool_calls"):
            out.append(("call", [c["id"] for c in m["tool_calls"]]))
        elif m["role"] == "tool":
            out.append(("tool", m["tool_call_id"]))
        else:
            out.append((m["role"], m["content"]))
    return out


def test_a_call_left_unanswered_by_a_crash_is_not_sent() -> None:
    """[user, call(a), user]: the API would reject call(a) with no result after it."""
    msgs = conversation(("user", "q1"), ("call", ["a"]), ("user", "q2"))
    assert shape(select_window(newest_first(msgs))) == [("user", "q1"), ("user", "q2")]
    assert api_violations(select_window(newest_first(msgs))) == []


def test_a_pending_call_at_the_end_is_not_sent() -> None:
    msgs = conversation(("user", "q"), ("call", ["a"]))
    assert shape(select_window(newest_first(msgs))) == [("user", "q")]


def test_a_parallel_call_answered_in_part_keeps_only_the_answered_calls() -> None:
    msgs = conversation(("user", "q"), ("call", ["a", "b"]), ("tool", "a"), ("user", "q2"))
    window = select_window(newest_first(msgs))
    assert shape(window) == [("user", "q"), ("call", ["a"]), ("tool", "a"), ("user", "q2")]
    assert window[1]["content"] is None


def test_an_unanswered_call_keeps_its_text() -> None:
    calls = [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    msgs = [make(1, "user", "q"), make(2, "assistant", "let me look", tool_calls=calls)]
    window = select_window(newest_first(msgs))
    assert window == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "let me look"},
    ]


def test_a_late_result_after_a_later_user_message_is_not_moved_in_front_of_it() -> None:
    """call(a), user, tool(a): the result is an orphan, not pulled back to its call."""
    msgs = conversation(("call", ["a"]), ("user", "q"), ("tool", "a"))
    assert shape(select_window(newest_first(msgs))) == [("user", "q")]


def test_a_call_answered_twice_is_sent_with_its_first_result() -> None:
    msgs = conversation(("user", "q"), ("call", ["a"]), ("tool", "a"), ("tool", "a"))
    window = select_window(newest_first(msgs))
    assert shape(window) == [("user", "q"), ("call", ["a"]), ("tool", "a")]
    assert window[2]["content"] == "result a"


def test_parallel_calls_stored_one_per_row_are_one_assistant_message() -> None:
    """The Agents SDK stores call(a), call(b), result(a), result(b) as four rows."""
    msgs = conversation(
        ("user", "q"), ("call", ["a"]), ("call", ["b"]), ("tool", "b"), ("tool", "a")
    )
    window = select_window(newest_first(msgs))
    assert shape(window) == [("user", "q"), ("call", ["a", "b"]), ("tool", "b"), ("tool", "a")]
    # One unit of three chat messages: never split from each other or from the results.
    for limit in range(3):
        assert shape(select_window(newest_first(msgs), max_messages=limit)) == []
    assert shape(select_window(newest_first(msgs), max_messages=3)) == shape(window)[1:]


def test_sequential_tool_rounds_are_separate_units() -> None:
    msgs = conversation(("call", ["a"]), ("tool", "a"), ("call", ["b"]), ("tool", "b"))
    assert shape(select_window(newest_first(msgs), max_messages=2)) == [
        ("call", ["b"]),
        ("tool", "b"),
    ]
    assert len(select_window(newest_first(msgs), max_messages=4)) == 4


# ------------------------------------------------------------------- property test


def api_violations(chat: list[ChatMessage]) -> list[str]:
    """The OpenAI chat API's rules for tool messages, written independently of the window.

    Every ``tool_calls`` entry must be answered by a ``tool`` message with its id before
    the next non-tool message; every ``tool`` message must answer a call of the assistant
    message just before it (once); an assistant message needs content or tool calls.
    """
    errors: list[str] = []
    open_ids: set[str] | None = None  # calls still owed a result; None: no call before
    for i, m in enumerate(chat):
        if m["role"] == "tool":
            if open_ids is None or m["tool_call_id"] not in open_ids:
                errors.append(f"{i}: tool result {m['tool_call_id']!r} answers no open call")
            else:
                open_ids.discard(m["tool_call_id"])
            continue
        if open_ids:
            errors.append(f"{i}: calls {sorted(open_ids)} unanswered before {m['role']}")
        open_ids = None
        if m["role"] == "assistant":
            ids = [c["id"] for c in m.get("tool_calls") or []]
            if not ids and not m.get("content"):
                errors.append(f"{i}: empty assistant message")
            if len(ids) != len(set(ids)):
                errors.append(f"{i}: repeated call ids {ids}")
            if ids:
                open_ids = set(ids)
    if open_ids:
        errors.append(f"end: calls {sorted(open_ids)} unanswered")
    return errors


def test_the_oracle_rejects_what_the_api_rejects() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}, {"id": "b"}]}
    tool_a = {"role": "tool", "content": "r", "tool_call_id": "a"}
    tool_b = {"role": "tool", "content": "r", "tool_call_id": "b"}
    user = {"role": "user", "content": "q"}
    assert api_violations([user, call, tool_a, tool_b, user]) == []
    assert api_violations([user, call, tool_b, tool_a]) == []
    assert api_violations([call, tool_a, user])  # b unanswered
    assert api_violations([call, tool_a])  # b unanswered at the end
    assert api_violations([tool_a])  # a result with no call
    assert api_violations([call, tool_a, tool_b, tool_a])  # answered twice
    assert api_violations([call, user, tool_a, tool_b])  # results after a user message
    assert api_violations([{"role": "assistant", "content": None}])


# Stored steps: plain messages, tool-call messages (with or without text), tool results.
# Ids come from a small pool so that duplicates, orphans and partial answers are common.
_step = st.one_of(
    st.tuples(st.sampled_from(["user", "assistant", "system"]), st.just(None)),
    st.tuples(
        st.sampled_from(["call", "say_call"]),
        st.lists(st.sampled_from("abc"), min_size=1, max_size=3),
    ),
    st.tuples(st.just("tool"), st.sampled_from("abcz")),
)


def stored(specs: list[tuple[str, Any]]) -> list[MessagePublic]:
    """Oldest-first messages whose content names their position ("p7"), to check order."""
    out: list[MessagePublic] = []
    for pos, (kind, arg) in enumerate(specs, start=1):
        text = f"p{pos}"
        if kind in ("call", "say_call"):
            calls = [{"id": i, "type": "function", "function": {"name": "f"}} for i in arg]
            out.append(make(pos, "assistant", text if kind == "say_call" else "", tool_calls=calls))
        elif kind == "tool":
            out.append(make(pos, "tool", text, tool_call_id=arg))
        else:
            out.append(make(pos, kind, text))
    return out


def positions(window: list[ChatMessage]) -> list[int]:
    """The stored positions each window message came from (merged calls give several)."""
    return [int(p[1:]) for m in window for p in (m["content"] or "").split("\n") if p]


def is_valid(messages: list[MessagePublic]) -> bool:
    chat = [m.to_openai() for m in messages]
    return not api_violations(chat) and all(len(m.tool_calls or ()) < 2 for m in messages)


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(_step, max_size=25),
    max_messages=st.none() | st.integers(0, 30),
    max_tokens=st.none() | st.integers(0, 150),
)
def test_window_invariants(
    specs: list[tuple[str, Any]], max_messages: int | None, max_tokens: int | None
) -> None:
    msgs = stored(specs)
    window = select_window(newest_first(msgs), max_messages=max_messages, max_tokens=max_tokens)
    full = select_window(newest_first(msgs))
    # Whatever was stored, the model API accepts the window.
    assert api_violations(window) == []
    assert api_violations(full) == []
    if max_messages is not None:
        assert len(window) <= max_messages
    if max_tokens is not None:
        assert sum(approximate_tokens(m) for m in window) <= max_tokens
    # Order kept: every message comes from the store, in stored order, at most once.
    sent = positions(full)
    assert sent == sorted(set(sent))
    # Nothing but tool traffic is lost: every plain message is sent, with its text.
    plain = [m.position for m in msgs if m.role != "tool" and (m.content or not m.tool_calls)]
    assert set(plain) <= set(sent)
    # A conversation that already follows the API's rules is sent exactly as stored.
    if is_valid(msgs):
        assert full == [m.to_openai() for m in msgs]
    # The window is the newest part of the full window, nothing in between skipped...
    assert full[len(full) - len(window) :] == window
    # ... and maximal: the next older unit of the full window would not have fitted.
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


def test_a_stored_call_id_that_is_not_a_string_is_never_answered() -> None:
    # Rows written before MessageCreate refused such ids (or by raw SQL): the window
    # treats the call as unanswered instead of failing on an unhashable id.
    odd = [{"id": [], "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    msgs = [make(1, "user", "q"), make(2, "assistant", "thinking", tool_calls=odd)]
    window = select_window(newest_first(msgs))
    assert window == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "thinking"},
    ]
    assert api_violations(window) == []
