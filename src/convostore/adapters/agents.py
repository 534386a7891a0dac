"""OpenAI Agents SDK sessions stored in convostore conversations (extra ``[agents]``).

    from agents import Agent, Runner
    from convostore import AsyncStore
    from convostore.adapters.agents import ConvostoreSession

    store = AsyncStore()                                   # DATABASE_URL, or ./convostore.db
    conv = await store.create_conversation("alice")
    session = ConvostoreSession(user_id="alice", conversation_id=conv.id, store=store)
    result = await Runner.run(agent, "Hello", session=session)

``ConvostoreSession`` implements the SDK's ``Session`` protocol (``session_id``,
``session_settings``, ``get_items``, ``add_items``, ``pop_item``, ``clear_session``). One SDK
item is one stored message: the item itself is kept verbatim in the message ``metadata``
(under :data:`ITEM_KEY`), so it comes back exactly as it was given, while the row reads as a
normal chat message everywhere else: text as text, a ``function_call`` as an assistant
message with OpenAI ``tool_calls``, a ``function_call_output`` as a ``tool`` message, anything
else (reasoning, hosted tool calls) as an assistant message with a one-line label. Messages
written through other interfaces (REST, ``Store.append_message``) are read back as their SDK
equivalents, so a conversation can be started anywhere and continued by an agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from convostore.errors import ConflictError, NotFoundError, ValidationError, require_extra

try:
    from agents.memory import SessionSettings
    from agents.memory.session_settings import coerce_session_settings
except ImportError:  # pragma: no cover - exercised by the missing-extra test
    require_extra("agents", "agents", "convostore.adapters.agents")
    raise

from convostore._ops import MAX_MESSAGE_PAGE
from convostore.items import ITEM_KEY, item_to_message, message_items
from convostore.models import MAX_ID_LENGTH
from convostore.schemas import MessagePublic, validate_user_id
from convostore.store import AsyncStore

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["ITEM_KEY", "ConvostoreSession", "item_to_message", "message_items"]


class ConvostoreSession:
    """An Agents SDK session kept in one convostore conversation owned by ``user_id``.

    Give either ``conversation_id`` (your endpoint already knows it), or an external
    ``session_id`` string: the user's conversation with that ``external_id`` is used and,
    with ``create=True``, created on the first write (one winner among concurrent writers).
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str | None = None,
        *,
        user_id: str,
        store: AsyncStore,
        conversation_id: int | None = None,
        create: bool = True,
        title: str | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> None:
        if (session_id is None) == (conversation_id is None):
            raise ValidationError("session_id", "give exactly one of session_id or conversation_id")
        if session_id is not None and (
            not isinstance(session_id, str)
            or not session_id.strip()
            or len(session_id) > MAX_ID_LENGTH
        ):
            raise ValidationError(
                "session_id", f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"
            )
        if conversation_id is not None and (
            isinstance(conversation_id, bool) or not isinstance(conversation_id, int)
        ):
            raise ValidationError("conversation_id", "must be an integer")
        if not isinstance(store, AsyncStore):
            raise ValidationError("store", "must be a convostore AsyncStore")
        self.user_id = validate_user_id(user_id)
        self.store = store
        self.session_id = session_id if session_id is not None else str(conversation_id)
        self.session_settings = _settings(session_settings)
        self._conversation_id = conversation_id
        self._by_session_id = session_id is not None
        self._create = create
        self._title = title

    @property
    def conversation_id(self) -> int | None:
        """The backing conversation (``None`` while an external session has none yet)."""
        return self._conversation_id

    # ------------------------------------------------------------------ Session protocol

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; with ``limit`` (or the settings' limit) the latest N."""
        n = limit if limit is not None else getattr(self.session_settings, "limit", None)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValidationError("limit", "must be a non-negative integer or None")
        conversation_id = await self._resolve()
        if conversation_id is None or n == 0:
            return []
        if n is None:
            rows = await self.store.get_messages(self.user_id, conversation_id)
            return cast("list[TResponseInputItem]", _items_of(rows))
        newest_first: list[MessagePublic] = []
        found, before = 0, None
        while found < n:
            page = await self.store.list_messages(
                self.user_id,
                conversation_id,
                order="desc",
                before=before,
                limit=min(n - found, MAX_MESSAGE_PAGE),
            )
            newest_first.extend(page.data)
            found += sum(len(message_items(row)) for row in page.data)
            if not page.has_more:
                break
            before = page.data[-1].position
        items = _items_of(reversed(newest_first))
        return cast("list[TResponseInputItem]", items[-n:])

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items in order, all or nothing (creating the conversation if allowed)."""
        if isinstance(items, str | bytes | Mapping):
            raise ValidationError("items", "must be a list of input items")
        messages = [item_to_message(item, field=f"items[{i}]") for i, item in enumerate(items)]
        if not messages:
            return
        conversation_id = await self._resolve()
        if conversation_id is not None:
            await self.store.append_messages(self.user_id, conversation_id, messages)
            return
        if not self._create:
            raise NotFoundError("session", self.session_id)
        try:
            # The first write creates the conversation with its messages in one transaction.
            conv = await self.store.create_conversation(
                self.user_id, title=self._title, external_id=self.session_id, messages=messages
            )
        except ConflictError:
            # Another writer created this session's conversation first: join it.
            conv = await self.store.get_conversation_by_external_id(self.user_id, self.session_id)
            await self.store.append_messages(self.user_id, conv.id, messages)
        self._conversation_id = conv.id

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (``None`` if the session is empty)."""
        conversation_id = await self._resolve()
        if conversation_id is None:
            return None
        while (row := await self.store.pop_message(self.user_id, conversation_id)) is not None:
            items = message_items(row)
            if items:
                return cast("TResponseInputItem", items[-1])
        return None

    async def clear_session(self) -> None:
        """Delete every item; the conversation itself (title, metadata) is kept."""
        conversation_id = await self._resolve()
        if conversation_id is not None:
            await self.store.delete_messages_after(self.user_id, conversation_id, 0)

    # ------------------------------------------------------------------------ helpers

    async def _resolve(self) -> int | None:
        """The conversation id, looking an external ``session_id`` up once per instance."""
        if self._conversation_id is not None or not self._by_session_id:
            return self._conversation_id
        try:
            conv = await self.store.get_conversation_by_external_id(self.user_id, self.session_id)
        except NotFoundError:
            return None
        self._conversation_id = conv.id
        return conv.id


class UnknownSessionSettings(ValidationError, TypeError):
    """A misspelt ``session_settings`` key: a ``ValidationError`` for convostore, and the
    ``TypeError`` the SDK's sessions raise, for code written against the SDK."""


def _settings(value: SessionSettings | Mapping[str, Any] | None) -> SessionSettings:
    """``SessionSettings`` from an instance, a mapping such as ``{"limit": 20}``, or nothing."""
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, Mapping):
        try:
            # The SDK's own coercion: an unknown key is refused, as every SDK session does.
            return coerce_session_settings(dict(value))
        except TypeError as exc:
            raise UnknownSessionSettings("session_settings", str(exc)) from None
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ValidationError("session_settings", str(exc).splitlines()[0]) from None
    raise ValidationError("session_settings", "must be a SessionSettings or a mapping")


def _items_of(messages: Sequence[MessagePublic] | Any) -> list[dict[str, Any]]:
    return [item for message in messages for item in message_items(message)]
