"""Drop-in memory for agent frameworks, backed by convostore conversations.

    # pip install 'convostore[agents]'  /  'convostore[langchain]'
    from convostore.adapters.agents import ConvostoreSession
    from convostore.adapters.langchain import ConvostoreChatMessageHistory

Each adapter lives in its own module and imports its framework only when that module is
imported, so ``import convostore.adapters`` stays cheap; a missing framework raises
:class:`convostore.errors.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convostore.adapters.agents import ConvostoreSession
    from convostore.adapters.langchain import ConvostoreChatMessageHistory

__all__ = ["ConvostoreChatMessageHistory", "ConvostoreSession"]

_LAZY = {
    "ConvostoreSession": "convostore.adapters.agents",
    "ConvostoreChatMessageHistory": "convostore.adapters.langchain",
}


def __getattr__(name: str) -> Any:
    """Import an adapter's module only when the adapter is first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
