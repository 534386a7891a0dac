"""Choosing the history window the model sees, without I/O.

The window is the most recent run of messages that fits ``max_messages`` and/or a token
budget, oldest first. Messages are taken in *units*: an assistant message with
``tool_calls`` together with the tool results that follow it is one unit, kept whole or
dropped whole, so a tool call is never separated from its results; tool results whose
call is not in the conversation (orphans) are never sent, so a window never starts on one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from convostore.schemas import ChatMessage, MessagePublic, to_chat_message

__all__ = ["TokenCounter", "approximate_tokens", "select_window"]

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


def _is_call(msg: MessagePublic) -> bool:
    return msg.role == "assistant" and bool(msg.tool_calls)


def _call_unit(
    calls_newest_first: list[MessagePublic], tools_newest_first: list[MessagePublic]
) -> list[MessagePublic]:
    """Adjacent tool-call messages (oldest first), then the results that answer them."""
    calls = calls_newest_first[::-1]
    ids = {c.get("id") for m in calls for c in m.tool_calls or () if isinstance(c, dict)}
    # Results that answer none of these calls are orphans: never sent to the model.
    return calls + [t for t in reversed(tools_newest_first) if t.tool_call_id in ids]


def _units_newest_first(messages: Iterable[MessagePublic]) -> Iterator[list[MessagePublic]]:
    """Group a newest-first stream into units, dropping orphan tool results.

    Adjacent assistant tool-call messages form one unit with their results: frameworks
    such as the Agents SDK store parallel calls one message each.
    """
    calls: list[MessagePublic] = []
    tools: list[MessagePublic] = []
    for msg in messages:
        if calls and not _is_call(msg):
            yield _call_unit(calls, tools)
            calls, tools = [], []
        if msg.role == "tool":
            tools.append(msg)
        elif _is_call(msg):
            calls.append(msg)
        else:
            tools = []  # results before a plain message have lost their call
            yield [msg]
    if calls:
        yield _call_unit(calls, tools)


def _to_chat(unit: list[MessagePublic]) -> list[ChatMessage]:
    """Chat format; a unit's tool calls become one assistant message, as the API expects."""
    chat = [to_chat_message(m.role, m.content, m.tool_calls, m.tool_call_id) for m in unit]
    n_calls = sum(1 for m in unit if _is_call(m))
    if n_calls <= 1:
        return chat
    calls = unit[:n_calls]
    content = "\n".join(m.content for m in calls if m.content)
    merged = [c for m in calls for c in m.tool_calls or ()]
    return [to_chat_message("assistant", content, merged, None), *chat[n_calls:]]


def select_window(
    messages_newest_first: Iterable[MessagePublic],
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
