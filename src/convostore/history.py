"""Choosing the history window the model sees, without I/O.

The window is the most recent run of messages that fits ``max_messages`` and/or a token
budget, oldest first, in a shape the OpenAI chat API accepts whatever was stored.
Messages are taken in *units*: an assistant message with ``tool_calls`` together with the
tool results stored right after it is one unit, kept whole or dropped whole, so a tool
call is never separated from its results. Calls that were never answered are left out
of their message (its text is kept), and tool results whose call is not right before
them (orphans) are never sent, so a window never starts on one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from convostore.schemas import ChatMessage, to_chat_message

__all__ = ["StoredMessage", "TokenCounter", "approximate_tokens", "select_window"]


class StoredMessage(Protocol):
    """What the window reads of a stored message (a ``StoredMessage`` is one)."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def tool_calls(self) -> list[dict[str, Any]] | None: ...
    @property
    def tool_call_id(self) -> str | None: ...


#: Counts the tokens of one chat-format message.
TokenCounter = Callable[[ChatMessage], int]

# OpenAI's documented overhead per message in the chat format is 3-4 tokens.
_PER_MESSAGE_OVERHEAD = 4


def approximate_tokens(message: ChatMessage) -> int:
    """A tokenizer-free estimate: about four characters per token, plus per-message overhead.

    Pass a real tokenizer (e.g. one built on ``tiktoken``) as ``token_counter`` when the
    budget must be exact; this default errs on the generous side for English text.
    """
    chars = len(message.get("content") or "")
    if message.get("tool_calls"):
        chars += len(json.dumps(message["tool_calls"], ensure_ascii=False))
    return _PER_MESSAGE_OVERHEAD + math.ceil(chars / 4)


def _is_call(msg: StoredMessage) -> bool:
    return msg.role == "assistant" and bool(msg.tool_calls)


def _call_id(call: Any) -> str | None:
    # Only a string id can be answered (tool_call_id is one); rows stored before that rule
    # was enforced may hold others, and must not break the window.
    call_id = call.get("id") if isinstance(call, dict) else None
    return call_id if isinstance(call_id, str) else None


def _call_unit(
    calls_newest_first: list[StoredMessage], tools_newest_first: list[StoredMessage]
) -> list[StoredMessage]:
    """Adjacent tool-call messages (oldest first), then the results that answer them.

    Only the first result for each call is kept: a call is answered once. Results that
    answer none of these calls are orphans and are never sent to the model.
    """
    calls = calls_newest_first[::-1]
    ids = {_call_id(c) for m in calls for c in m.tool_calls or ()}
    results: list[StoredMessage] = []
    for t in reversed(tools_newest_first):
        if t.tool_call_id in ids:
            ids.discard(t.tool_call_id)
            results.append(t)
    return calls + results


def _units_newest_first(messages: Iterable[StoredMessage]) -> Iterator[list[StoredMessage]]:
    """Group a newest-first stream into units, dropping orphan tool results.

    A unit is one plain message, or a run of adjacent assistant tool-call messages with
    the tool results stored right after it: frameworks such as the Agents SDK store
    parallel calls one message each.
    """
    calls: list[StoredMessage] = []
    tools: list[StoredMessage] = []
    for msg in messages:
        if calls and not _is_call(msg):
            yield _call_unit(calls, tools)
            calls, tools = [], []
        if msg.role == "tool":
            tools.append(msg)
        elif _is_call(msg):
            calls.append(msg)
        else:
            # Results stored after a plain message answer no call in front of them: the
            # API requires results right after their call, so they are never sent.
            tools = []
            yield [msg]
    if calls:
        yield _call_unit(calls, tools)


def _to_chat(unit: list[StoredMessage]) -> list[ChatMessage]:
    """Chat format the model API accepts; a unit's calls become one assistant message.

    A call with no result (a crashed or still-running tool) is left out, since the API
    rejects an assistant message whose ``tool_calls`` are not all answered; the message's
    text is kept, and a message left with neither text nor calls is not sent at all.
    """
    first = unit[0]
    if not _is_call(first):
        return [to_chat_message(first.role, first.content, None, first.tool_call_id)]
    n_calls = sum(1 for m in unit if _is_call(m))
    calls, results = unit[:n_calls], unit[n_calls:]
    answered = {t.tool_call_id for t in results}
    kept = []
    for call in (c for m in calls for c in m.tool_calls or ()):
        if _call_id(call) in answered:
            answered.discard(_call_id(call))  # a repeated call id is sent once
            kept.append(call)
    content = "\n".join(m.content for m in calls if m.content)
    if not kept:
        return [to_chat_message("assistant", content, None, None)] if content else []
    chat = [to_chat_message("assistant", content, kept, None)]
    return chat + [to_chat_message(t.role, t.content, None, t.tool_call_id) for t in results]


def select_window(
    messages_newest_first: Iterable[StoredMessage],
    *,
    max_messages: int | None = None,
    max_tokens: int | None = None,
    token_counter: TokenCounter = approximate_tokens,
) -> list[ChatMessage]:
    """The newest whole units that fit both limits, returned oldest first as chat dicts.

    ``max_messages`` caps the chat messages returned. The input is consumed lazily, so the
    caller may page through the database and stop as soon as the window is full.
    """
    chosen: list[list[ChatMessage]] = []
    count = 0
    tokens = 0
    for unit in _units_newest_first(messages_newest_first):
        chat = _to_chat(unit)
        if max_messages is not None and count + len(chat) > max_messages:
            break
        if max_tokens is not None:
            cost = sum(token_counter(c) for c in chat)
            if tokens + cost > max_tokens:
                break
            tokens += cost
        count += len(chat)
        chosen.append(chat)
    chosen.reverse()
    return [m for unit in chosen for m in unit]


def system_message(prompt: str) -> dict[str, Any]:
    """The pinned system prompt in chat format."""
    return {"role": "system", "content": prompt}
