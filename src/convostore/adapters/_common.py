"""Text renderings shared by the adapters (no framework imports here).

A stored row keeps the framework's object verbatim in its ``metadata``; its ``content`` is a
readable rendering for every other reader (REST, CLI, ``get_history``). The store refuses
empty content except on an assistant tool call, so things without text get a short label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from convostore.models import MAX_ID_LENGTH

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
