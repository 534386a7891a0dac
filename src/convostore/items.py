"""OpenAI Responses / Conversations items <-> stored messages: the one mapping.

One item is one stored message: the item itself is kept verbatim in the message ``metadata``
(under :data:`ITEM_KEY`), so it comes back exactly as it was given, while the row reads as a
normal chat message everywhere else (REST, CLI, ``get_history``): text as text, a
``function_call`` as an assistant message with OpenAI ``tool_calls``, a
``function_call_output`` as a ``tool`` message, anything else (reasoning, hosted tool calls,
types this module has never heard of) as an assistant message with a one-line label. The
store refuses empty content except on an assistant tool call, so things without text get a
short label. A message written through another interface (REST messages, the library) reads
back as its item equivalents (:func:`message_items`).

Used by the Agents SDK adapter (:mod:`convostore.adapters.agents`), the OpenAI-compatible
Conversations routes (:mod:`convostore.server.routes.items`) and the importers; nothing here
needs an optional extra.

Item ids (the Conversations API): row ``n``'s item is ``<prefix>_<n>`` (:func:`item_id`),
the prefix by type (``msg``, ``fc``, ``fco``, ``rs``, else ``item``); a row that stands for
several items (an assistant message with text and two tool calls, written through our own
API) numbers the rest ``<prefix>_<n>_<k>`` (k = 1, 2, ...): unique and stable while the row
exists. :func:`parse_item_id` reads any ``<prefix>_<n>[_<k>]`` back as (row ``n``, ``k``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from convostore.errors import ValidationError
from convostore.models import MAX_ID_LENGTH
from convostore.schemas import MessageCreate, MessagePublic, validate_messages

__all__ = [
    "ITEM_KEY",
    "MAX_ITEM_ID",
    "content_text",
    "conversation_items",
    "item_chat_form",
    "item_id",
    "item_label",
    "item_to_message",
    "items_to_messages",
    "message_items",
    "or_label",
    "parse_item_id",
    "part_text",
    "shorten",
]

#: Message ``metadata`` key holding the item verbatim (the name dates from the Agents
#: adapter, which wrote it first; every writer of items uses it).
ITEM_KEY = "openai_agents_item"

Item = dict[str, Any]

#: Longest rendering of an item that has no text of its own (reasoning, hosted tool calls).
SUMMARY_LENGTH = 200

_PART_LABELS = {
    "input_image": "[image]",
    "image_url": "[image]",
    "image": "[image]",
    "input_file": "[file]",
    "file": "[file]",
    "input_audio": "[audio]",
    "audio": "[audio]",
}


_MESSAGE_ROLES = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}
_CALL_OUTPUTS = {"function_call_output", "custom_tool_call_output"}


def part_text(part: Any) -> str:
    """The text of one content part, a label such as ``[image]`` for media, else ``""``."""
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return ""
    for key in ("text", "refusal"):
        value = part.get(key)
        if isinstance(value, str):
            return value
    kind = part.get("type")
    if kind == "input_file" and isinstance(part.get("filename"), str):
        return f"[file: {part['filename']}]"
    # Media get a label so readers know something was there; other kinds (reasoning
    # blocks, provider extensions) are not text a reader needs.
    return _PART_LABELS.get(str(kind), "")


def content_text(content: Any) -> str:
    """Flatten a string or a list of content parts to text (parts joined by newlines)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, Mapping | bytes):
        return "\n".join(t for t in (part_text(p) for p in content) if t)
    return part_text(content)


def shorten(text: str, limit: int = SUMMARY_LENGTH) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for one-line summaries."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def or_label(text: str, label: str) -> str:
    """``text`` unless it is blank (which the store refuses), else ``label``."""
    return text if text.strip() else label


def item_chat_form(item: Mapping[str, Any]) -> dict[str, Any]:
    """The chat message for one OpenAI Responses/Conversations item (Agents SDK items too).

    A text message keeps its role (``developer`` reads as ``system``); a ``function_call``
    becomes an assistant message with OpenAI ``tool_calls``; its output a ``tool`` message;
    anything else an assistant message with a one-line label (see :func:`item_label`).
    """
    kind = item.get("type")
    role = item.get("role")
    if kind in (None, "message") and role in _MESSAGE_ROLES:
        text = content_text(item.get("content"))
        return {"role": _MESSAGE_ROLES[role], "content": or_label(text, "[empty message]")}
    call_id = item.get("call_id")
    has_call_id = isinstance(call_id, str) and 0 < len(call_id) <= MAX_ID_LENGTH
    if kind == "function_call" and has_call_id and isinstance(item.get("name"), str):
        function = {"name": item["name"], "arguments": item.get("arguments", "")}
        call = {"id": call_id, "type": "function", "function": function}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    if kind == "custom_tool_call" and has_call_id and isinstance(item.get("name"), str):
        custom = {"name": item["name"], "input": item.get("input", "")}
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": call_id, "type": "custom", "custom": custom}],
        }
    if kind in _CALL_OUTPUTS and has_call_id:
        text = content_text(item.get("output"))
        content = or_label(text, "[empty output]")
        return {"role": "tool", "tool_call_id": call_id, "content": content}
    return {"role": "assistant", "content": item_label(item)}


def item_label(item: Mapping[str, Any]) -> str:
    """A one-line stand-in for an item with no chat equivalent, e.g. ``[reasoning] ...``."""
    kind = str(item.get("type") or "item")
    if kind == "reasoning":
        summary = content_text(item.get("summary"))
        return f"[reasoning] {shorten(summary)}" if summary.strip() else "[reasoning]"
    name = item.get("name") or item.get("server_label")
    return f"[{kind}: {shorten(name)}]" if isinstance(name, str) and name.strip() else f"[{kind}]"


# ------------------------------------------------------------- items <-> messages


def item_to_message(item: Any, *, field: str = "item") -> dict[str, Any]:
    """The message row for one item: a readable chat message plus the item verbatim."""
    if not isinstance(item, Mapping):
        raise ValidationError(field, "must be an input item (a JSON object)")
    kind = item.get("type")
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise ValidationError(f"{field}.type", "must be a non-empty string")
    if kind is None and not isinstance(item.get("role"), str):
        raise ValidationError(f"{field}.type", "is required (or a message's role and content)")
    message = item_chat_form(item)
    message["metadata"] = {ITEM_KEY: dict(item)}
    return message


def items_to_messages(
    items: Sequence[Any], *, max_content_length: int, field: str = "items"
) -> list[MessageCreate]:
    """:func:`item_to_message` for each item, validated as the store will (so that an
    error names the item, ``items[3].content``, not the message it would have become)."""
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise ValidationError(field, "must be a list of items")
    messages = [item_to_message(item, field=f"{field}[{i}]") for i, item in enumerate(items)]
    return validate_messages(messages, max_content_length=max_content_length, field=field)


def message_items(message: MessagePublic) -> list[Item]:
    """The items a stored message stands for (one, unless another interface wrote it)."""
    raw = (message.metadata or {}).get(ITEM_KEY)
    if isinstance(raw, dict):
        return [raw]
    if message.role == "tool":
        output = {"call_id": message.tool_call_id, "output": message.content}
        return [{"type": "function_call_output", **output}]
    items: list[Item] = []
    if message.content:
        items.append({"role": message.role, "content": message.content})
    for call in message.tool_calls or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments", ""),
                }
            )
    return items


# ---------------------------------------------------------- Conversations API item ids

_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}
_ITEM_ID = re.compile(r"^[a-z]{1,16}_([1-9][0-9]{0,18})(?:_([1-9][0-9]{0,5}))?$")
#: The largest row id an item id can name (a BIGINT).
MAX_ITEM_ID = 2**63 - 1
_OUTPUT_ROLES = frozenset({"assistant"})


def item_id(item: Mapping[str, Any], row_id: int, index: int = 0) -> str:
    """The id of the ``index``-th item of row ``row_id``: ``msg_12``, ``fc_12_1``."""
    kind = item.get("type") or ("message" if "role" in item else None)
    prefix = _PREFIXES.get(str(kind), "item")
    return f"{prefix}_{row_id}" if index == 0 else f"{prefix}_{row_id}_{index}"


def parse_item_id(value: str, field: str = "item_id") -> tuple[int, int]:
    """(row id, index) of an item id from :func:`item_id` (any prefix); else a
    ``ValidationError`` naming ``field``."""
    match = _ITEM_ID.match(value)
    if match is None or int(match.group(1)) > MAX_ITEM_ID:
        raise ValidationError(field, f"not an item id: {value[:80]!r} (expected e.g. 'msg_12')")
    return int(match.group(1)), int(match.group(2) or 0)


def _as_item(item: Item) -> Item:
    """A message in the Responses "easy input" form (no ``type``, or text ``content``) in
    the full form the Conversations API answers with (``type: "message"``, content parts);
    every other item unchanged."""
    if item.get("type") not in (None, "message") or not isinstance(item.get("role"), str):
        return item
    content = item.get("content")
    if isinstance(content, str):
        part: Item = {"type": "input_text", "text": content}
        if item["role"] in _OUTPUT_ROLES:
            part = {"type": "output_text", "text": content, "annotations": []}
        content = [part]
    return {"type": "message", **item, "content": content}


def conversation_items(message: MessagePublic) -> list[Item]:
    """The Conversations API items of a stored message, oldest first, each with its id.

    An item stored verbatim comes back as given, its ``id`` the server's (a client's own
    ``id`` is replaced, as OpenAI replaces it; the original stays in the row's metadata).
    """
    out = []
    for index, item in enumerate(message_items(message)):
        full = _as_item(item)
        full = {**full, "id": item_id(full, message.id, index)}
        if "id" in item:  # keep the key order of the item as given
            full = {k: full[k] for k in item} | full
        out.append(full)
    return out
