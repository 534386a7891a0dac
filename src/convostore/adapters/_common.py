"""Text renderings shared by the adapters (no framework imports here).

A stored row keeps the framework's object verbatim in its ``metadata``; its ``content`` is a
readable rendering for every other reader (REST, CLI, ``get_history``). The store refuses
empty content except on an assistant tool call, so things without text get a short label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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
