"""LangChain chat message history kept in a convostore conversation (extra ``[langchain]``).

    from langchain_core.messages import AIMessage, HumanMessage
    from convostore import Store
    from convostore.adapters.langchain import ConvostoreChatMessageHistory

    store = Store()                                        # DATABASE_URL, or ./convostore.db
    conv = store.create_conversation("alice")
    history = ConvostoreChatMessageHistory(user_id="alice", conversation_id=conv.id, store=store)
    history.add_messages([HumanMessage("Hi"), AIMessage("Hello!")])
    history.messages                                       # the same two messages back

Every LangChain message is one stored message. The message itself is kept verbatim in the
row ``metadata`` (``message_to_dict``, under :data:`MESSAGE_KEY`), so ``tool_calls``,
``additional_kwargs``, ``response_metadata``, ids, names, ``ToolMessage.status`` and
``artifact`` all come back unchanged; the row itself reads as the OpenAI chat message
LangChain would send (``AIMessage.tool_calls`` as OpenAI ``tool_calls``, ``ToolMessage`` as
a ``tool`` message). Rows written through other interfaces are read back with
``convert_to_messages``. Sync methods need a :class:`~convostore.Store`; async methods use
an :class:`~convostore.AsyncStore` when given one, else run the sync store in a thread.

Note: ``BaseChatMessageHistory`` is deprecated since langchain-core 1.6.4 (removal in 2.0);
subclasses such as this one do not warn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from convostore.errors import ConfigurationError, ValidationError, require_extra

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import (
        BaseMessage,
        convert_to_messages,
        convert_to_openai_messages,
        message_to_dict,
        messages_from_dict,
    )
except ImportError:  # pragma: no cover - exercised by the missing-extra test
    require_extra("langchain_core", "langchain", "convostore.adapters.langchain")
    raise

from convostore.items import content_text, or_label
from convostore.schemas import MessagePublic, validate_user_id
from convostore.store import AsyncStore, Store

__all__ = ["MESSAGE_KEY", "ConvostoreChatMessageHistory", "message_from_row", "message_to_row"]

#: Message ``metadata`` key holding ``message_to_dict(message)`` verbatim.
MESSAGE_KEY = "langchain_message"

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class ConvostoreChatMessageHistory(BaseChatMessageHistory):
    """A ``BaseChatMessageHistory`` over one conversation of ``user_id``.

    Pass ``store`` (sync) and/or ``astore`` (async); the conversation must exist and belong
    to ``user_id`` (otherwise every call raises ``NotFoundError``).
    """

    def __init__(
        self,
        *,
        user_id: str,
        conversation_id: int,
        store: Store | None = None,
        astore: AsyncStore | None = None,
    ) -> None:
        super().__init__()
        if store is None and astore is None:
            raise ValidationError("store", "pass store=Store(...) and/or astore=AsyncStore(...)")
        if store is not None and not isinstance(store, Store):
            raise ValidationError("store", "must be a convostore Store (use astore= for async)")
        if astore is not None and not isinstance(astore, AsyncStore):
            raise ValidationError("astore", "must be a convostore AsyncStore")
        if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
            raise ValidationError("conversation_id", "must be an integer")
        self.user_id = validate_user_id(user_id)
        self.conversation_id = conversation_id
        self.store = store
        self.astore = astore

    def _sync(self) -> Store:
        if self.store is None:
            raise ConfigurationError(
                "the sync methods of ConvostoreChatMessageHistory need store=Store(...); "
                "with only an AsyncStore use aget_messages / aadd_messages / aclear"
            )
        return self.store

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the conversation, oldest first."""
        rows = self._sync().get_messages(self.user_id, self.conversation_id)
        return [message_from_row(row) for row in rows]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages in order, all or nothing."""
        rows = _rows(messages)
        self._sync().append_messages(self.user_id, self.conversation_id, rows)

    def clear(self) -> None:
        """Delete every message; the conversation itself is kept."""
        self._sync().delete_messages_after(self.user_id, self.conversation_id, 0)

    async def aget_messages(self) -> list[BaseMessage]:
        """Every message of the conversation, oldest first."""
        if self.astore is None:
            return await super().aget_messages()
        rows = await self.astore.get_messages(self.user_id, self.conversation_id)
        return [message_from_row(row) for row in rows]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages in order, all or nothing."""
        if self.astore is None:
            await super().aadd_messages(messages)
            return
        rows = _rows(messages)
        await self.astore.append_messages(self.user_id, self.conversation_id, rows)

    async def aclear(self) -> None:
        """Delete every message; the conversation itself is kept."""
        if self.astore is None:
            await super().aclear()
            return
        await self.astore.delete_messages_after(self.user_id, self.conversation_id, 0)


def _rows(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    if isinstance(messages, str | bytes | Mapping | BaseMessage):
        raise ValidationError("messages", "must be a list of LangChain messages")
    return [message_to_row(m, field=f"messages[{i}]") for i, m in enumerate(messages)]


def message_to_row(message: BaseMessage, *, field: str = "message") -> dict[str, Any]:
    """The stored form of a LangChain message: its OpenAI chat form plus itself verbatim."""
    if not isinstance(message, BaseMessage):
        raise ValidationError(field, "must be a LangChain message (BaseMessage)")
    try:
        chat: dict[str, Any] = dict(convert_to_openai_messages(message))
    except (ValueError, TypeError, KeyError):
        # Content blocks OpenAI cannot express: keep the plain text rendering instead.
        chat = {"role": message.type, "content": message.content}
    text = content_text(chat.get("content"))
    role = _ROLES.get(str(chat.get("role")))
    tool_call_id = chat.get("tool_call_id")
    row: dict[str, Any] = {"metadata": {MESSAGE_KEY: message_to_dict(message)}}
    if chat.get("role") == "tool" and isinstance(tool_call_id, str) and tool_call_id:
        row.update(role="tool", tool_call_id=tool_call_id, content=or_label(text, "[empty output]"))
    elif role == "assistant" and chat.get("tool_calls"):
        row.update(role="assistant", content=text, tool_calls=list(chat["tool_calls"]))
    elif role is not None:
        row.update(role=role, content=or_label(text, "[empty message]"))
    else:
        # Roles OpenAI has no place for (custom ChatMessage roles, legacy functions).
        label = f"[{chat.get('role') or message.type}]"
        row.update(role="assistant", content=f"{label} {text}" if text.strip() else label)
    return row


def message_from_row(row: MessagePublic) -> BaseMessage:
    """The LangChain message a stored row stands for."""
    raw = (row.metadata or {}).get(MESSAGE_KEY)
    if isinstance(raw, dict):
        return messages_from_dict([raw])[0]
    # Written through another interface: read its OpenAI chat form the LangChain way.
    return convert_to_messages([row.to_openai()])[0]
