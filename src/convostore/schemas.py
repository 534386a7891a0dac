"""Input and output shapes of the store: validated inputs, plain read models, pages.

Inputs (``MessageCreate``, ``ConversationCreate``) are validated here, once, for every
interface (library, REST, CLI, adapters); the rules are those of SPEC.md "Validation".
Outputs (``ConversationPublic``, ``MessagePublic``) are plain pydantic models detached from
any session, built without re-validation because the database already holds valid rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from convostore.errors import ValidationError
from convostore.models import MAX_ID_LENGTH, MAX_TITLE_LENGTH, MessageRole, MessageStatus
from convostore.retention import format_retention, normalize_retention, parse_retention

__all__ = [
    "ChatMessage",
    "ConversationPublic",
    "MessageCreate",
    "MessageInput",
    "MessagePublic",
    "Order",
    "Page",
    "PurgeReport",
    "RetentionPolicy",
    "SearchHit",
    "SearchQuery",
    "StreamChunk",
    "StreamRead",
]

T = TypeVar("T")
#: Positions are a 32-bit INTEGER column on both databases.
MAX_POSITION = 2**31 - 1
Order = Literal["asc", "desc"]


_ROLES = [repr(r.value) for r in MessageRole]
#: pydantic's own wording for a bad role, also used for a role that is not a string.
_ROLE_RULE = f"Input should be {', '.join(_ROLES[:-1])} or {_ROLES[-1]}"


class MessageCreate(BaseModel):
    """A message to append. ``content`` may be empty only for an assistant tool call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: MessageRole
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    metadata: dict[str, Any] | None = None
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Client-supplied idempotency key, unique within the conversation.",
    )

    @field_validator("role", mode="before")
    @classmethod
    def _role_is_text(cls, value: Any) -> Any:
        # The enum lookup's own error message would repr() the value: a deeply nested one
        # raises RecursionError instead of this error.
        if not isinstance(value, str):
            raise ValueError(_ROLE_RULE)
        return value

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> MessageCreate:
        # A partial message (a streamed reply that has not received text yet, or one
        # that ended interrupted) may be empty; every other rule still holds.
        partial = bool(info.context and info.context.get("partial"))
        if (
            not partial
            and not self.content.strip()
            and not (self.role is MessageRole.ASSISTANT and self.tool_calls)
        ):
            raise ValueError(
                "content: must not be empty or whitespace only "
                "(allowed only for an assistant message with tool_calls)"
            )
        if self.tool_calls is not None and self.role is not MessageRole.ASSISTANT:
            raise ValueError("tool_calls: only assistant messages may carry tool_calls")
        if any(not isinstance(call.get("id"), str | None) for call in self.tool_calls or ()):
            # A tool message answers a call by its id (``tool_call_id``, a string): the
            # history window pairs them by it, so any other id could never be answered.
            raise ValueError("tool_calls: a tool call's id must be a string")
        if self.role is MessageRole.TOOL and self.tool_call_id is None:
            raise ValueError("tool_call_id: required for a tool message")
        if self.tool_call_id is not None and self.role is not MessageRole.TOOL:
            raise ValueError("tool_call_id: only tool messages may carry a tool_call_id")
        return self


#: What the store accepts as a message: a validated model or a plain mapping.
MessageInput = MessageCreate | Mapping[str, Any]


class ConversationPublic(BaseModel):
    """A conversation as the store returns it."""

    id: int
    user_id: str
    title: str | None
    metadata: dict[str, Any] | None
    external_id: str | None = None
    message_count: int
    created_at: datetime
    updated_at: datetime
    #: When it stops existing for readers (``None``: never), unless ``hold`` is set.
    expires_at: datetime | None = None
    #: A temporary chat (created with ``temporary=True``): its own, shorter policy.
    temporary: bool = False
    #: Kept past ``expires_at`` (a pin, star or legal hold) until the hold is cleared.
    hold: bool = False
    #: The conversation's lifetime after its last activity, in seconds (``None``: no expiry).
    retention_seconds: int | None = Field(default=None, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retention(self) -> str | None:
        """The conversation's policy as text (``"30d"``); ``None`` when it never expires."""
        return format_retention(self.retention_seconds)


class RetentionPolicy(BaseModel):
    """A user's own retention defaults; ``None`` means "the global default" (settings)."""

    retention: str | None = None
    temporary_retention: str | None = None


class PurgeReport(BaseModel):
    """What :meth:`Store.purge_expired` deleted (or, with ``dry_run``, would delete)."""

    conversations: int = 0
    #: Of those, temporary conversations.
    temporary: int = 0
    messages: int = 0
    batches: int = 0
    dry_run: bool = False


RoleName = Literal["user", "assistant", "system", "tool"]
StatusName = Literal["complete", "streaming", "interrupted", "error"]


class MessagePublic(BaseModel):
    """A stored message as the store returns it."""

    id: int
    conversation_id: int
    user_id: str
    position: int
    role: RoleName
    content: str
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    metadata: dict[str, Any] | None = None
    key: str | None = None
    created_at: datetime
    #: ``complete``, or for a streamed reply ``streaming`` (``content`` is the text so far),
    #: ``interrupted`` (its writer stopped: the lease ran out, or it said so) or ``error``.
    status: StatusName = "complete"

    def to_openai(self) -> ChatMessage:
        """This message as an OpenAI chat-completions message dict."""
        return to_chat_message(self.role, self.content, self.tool_calls, self.tool_call_id)


ChatMessage = dict[str, Any]


def to_chat_message(
    role: str, content: str, tool_calls: list[dict[str, Any]] | None, tool_call_id: str | None
) -> ChatMessage:
    """The OpenAI chat format: ``content`` is null for a tool-call-only assistant turn."""
    msg: ChatMessage = {
        "role": str(role),
        "content": content if content or not tool_calls else None,
    }
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if tool_call_id is not None:
        msg["tool_call_id"] = tool_call_id
    return msg


class StreamChunk(BaseModel):
    """One stored delta of a streamed reply."""

    seq: int
    text: str


class StreamRead(BaseModel):
    """A streamed reply for a reader that resumes: the message (its lease-aware ``status``
    and the content so far) and the chunks after the reader's last ``seq``, in order."""

    message: MessagePublic
    chunks: list[StreamChunk]
    #: More chunks than one read returns are stored after the last one here.
    has_more: bool = False

    @property
    def done(self) -> bool:
        """Whether the reply has ended (nothing more will be added to it)."""
        return self.message.status != MessageStatus.STREAMING.value


class Page(BaseModel, Generic[T]):
    """One page of a keyset-paginated list.

    ``next_cursor`` is ``None`` on the last page; pass it back to get the next one (for
    messages it is the position to pass as ``after`` (asc) or ``before`` (desc)). A
    ``limit=0`` page reads nothing: its ``next_cursor`` is the one it was asked with.
    """

    data: list[T]
    has_more: bool
    next_cursor: str | None = None


class SearchHit(BaseModel):
    """One full-text search result.

    ``kind`` is ``"message"`` (``message`` matched) or ``"title"`` (the conversation's title
    matched; ``message`` is then its newest message, ``None`` if it has none). ``snippet``
    is a short extract of the matching text with each match between ``**``; ``rank``
    orders hits (higher is more relevant) and depends only on the text and the query.
    """

    kind: Literal["message", "title"]
    conversation_id: int
    conversation_title: str | None
    message: MessagePublic | None
    snippet: str
    rank: float


# --------------------------------------------------------------------------- validation


def _field_of(err: Any, prefix: str) -> tuple[str, str]:
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"])
    # Our own model validator already names the field ("content: ...").
    if not loc and ": " in msg:
        msg = msg.removeprefix("Value error, ")
        loc, _, msg = msg.partition(": ")
    msg = msg.removeprefix("Value error, ")
    return (f"{prefix}.{loc}" if prefix and loc else prefix or loc or "body"), msg


def validate_message(
    data: MessageInput, *, max_content_length: int, field: str = ""
) -> MessageCreate:
    """Validate one message; raise ``ValidationError`` naming the (dotted) field and rule."""
    if isinstance(data, MessageCreate):
        msg = data
    else:
        if not isinstance(data, Mapping):
            raise ValidationError(field or "message", "must be an object")
        try:
            msg = MessageCreate.model_validate(dict(data))
        except PydanticValidationError as exc:
            name, rule = _field_of(exc.errors()[0], field)
            raise ValidationError(name, rule) from None
    prefix = f"{field}." if field else ""
    if len(msg.content) > max_content_length:
        raise ValidationError(
            f"{prefix}content",
            f"must be at most {max_content_length} characters (got {len(msg.content)})",
        )
    check_text(f"{prefix}content", msg.content)
    check_json(f"{prefix}tool_calls", msg.tool_calls)
    check_json(f"{prefix}metadata", msg.metadata)
    if msg.tool_call_id is not None:
        check_text(f"{prefix}tool_call_id", msg.tool_call_id)
    if msg.key is not None:
        check_text(f"{prefix}key", msg.key)
    return msg


def validate_partial_message(
    data: Mapping[str, Any], *, max_content_length: int, field: str = ""
) -> MessageCreate:
    """:func:`validate_message` for a message that may still be empty: a streamed reply
    being begun, or an interrupted one being imported."""
    try:
        msg = MessageCreate.model_validate(dict(data), context={"partial": True})
    except PydanticValidationError as exc:
        name, rule = _field_of(exc.errors()[0], field)
        raise ValidationError(name, rule) from None
    return validate_message(msg, max_content_length=max_content_length, field=field)


#: Roles a reply may be streamed as (a tool result is never streamed: it needs its call id).
STREAMABLE_ROLES = frozenset({"assistant", "user", "system"})
#: Delta sequence numbers are a 32-bit INTEGER column on both databases.
MAX_SEQ = 2**31 - 1


def validate_delta(seq: int, text: str, *, max_content_length: int) -> None:
    """A delta: ``seq`` a non-negative integer (the writer's own order), ``text`` a
    non-empty string no longer than a whole message may be."""
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise ValidationError("seq", "must be an integer")
    if not 0 <= seq <= MAX_SEQ:
        raise ValidationError("seq", f"must be between 0 and {MAX_SEQ}")
    if not isinstance(text, str) or not text:
        raise ValidationError("text", "must be a non-empty string")
    if len(text) > max_content_length:
        raise ValidationError(
            "text", f"must be at most {max_content_length} characters (got {len(text)})"
        )
    check_text("text", text)


def validate_after_seq(value: int | None) -> int:
    """Where a resuming reader left off: ``None`` (from the start) or a seq it has."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("after_seq", "must be an integer")
    if not -1 <= value <= MAX_SEQ:
        raise ValidationError("after_seq", f"must be between -1 and {MAX_SEQ}")
    return value


def validate_messages(
    items: Sequence[MessageInput], *, max_content_length: int, field: str = "messages"
) -> list[MessageCreate]:
    """Validate a batch; the first bad item is reported as ``messages[i].field``."""
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise ValidationError(field, "must be a list of messages")
    out = [
        validate_message(m, max_content_length=max_content_length, field=f"{field}[{i}]")
        for i, m in enumerate(items)
    ]
    keys = [m.key for m in out if m.key is not None]
    if len(keys) != len(set(keys)):
        raise ValidationError(f"{field}.key", "must be unique within one request")
    return out


def check_text(field: str, value: str) -> None:
    """PostgreSQL text cannot hold NUL; refuse it on every database, with a clear error."""
    if "\x00" in value:
        raise ValidationError(field, "must not contain the NUL character (\\u0000)")
    _check_encodable(field, value)


def _check_encodable(field: str, value: str) -> bytes:
    """Lone surrogates cannot be encoded to UTF-8: a clear error, not a driver crash."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "must be valid Unicode (no lone surrogates)") from None


# A JSON \u0000 escape, not a literal backslash followed by "u0000" (that is "\\u0000").
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


#: How deep ``metadata`` and ``tool_calls`` may nest (``{"a": [1]}`` is 2 levels deep).
MAX_JSON_DEPTH = 32
#: The most a ``metadata`` or ``tool_calls`` value may take, serialised as UTF-8 JSON.
MAX_JSON_BYTES = 256 * 1024


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests deeper than the limit; iterative, so never a RecursionError
    (and a self-referencing value ends at the limit instead of looping)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_json(field: str, value: Any) -> None:
    """JSON values must serialise, stay within the depth and size limits, and (for
    PostgreSQL's JSONB) hold no NUL characters: the same rule on every database."""
    if value is None:
        return
    if _too_deep(value):
        raise ValidationError(field, f"must not nest more than {MAX_JSON_DEPTH} levels deep")
    try:
        dumped = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"must be JSON-serialisable ({exc})") from None
    if _JSON_NUL.search(dumped):
        raise ValidationError(field, "must not contain the NUL character (\\u0000)")
    size = len(_check_encodable(field, dumped))
    if size > MAX_JSON_BYTES:
        raise ValidationError(field, f"must be at most {MAX_JSON_BYTES} bytes as JSON (got {size})")


def validate_title(title: str | None, field: str = "title") -> str | None:
    """Titles are optional, at most 255 characters, and never blank."""
    if title is None:
        return None
    if not isinstance(title, str):
        raise ValidationError(field, "must be a string")
    title = title.strip()
    if not title:
        raise ValidationError(field, "must not be empty or whitespace only")
    if len(title) > MAX_TITLE_LENGTH:
        raise ValidationError(
            field, f"must be at most {MAX_TITLE_LENGTH} characters (got {len(title)})"
        )
    check_text(field, title)
    return title


def validate_id(value: str, field: str) -> str:
    """Ids from the host app (users, external conversation ids): a non-empty string of at
    most 255 characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(field, f"must be at most {MAX_ID_LENGTH} characters")
    check_text(field, value)
    return value


def validate_user_id(user_id: str) -> str:
    """User ids come from the host's auth (see :func:`validate_id`)."""
    return validate_id(user_id, "user_id")


#: Longer than any conversation cursor the store hands out (the REST layer's cap too).
MAX_CURSOR_LENGTH = 512


def validate_cursor(cursor: str | None) -> str | None:
    """A cursor is a string of bounded length; what it says is checked when it is decoded.

    Decoding a huge one is work for nothing, and a deeply nested one would overflow the
    JSON decoder (RecursionError) instead of being refused.
    """
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise ValidationError("cursor", "must be a string")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValidationError("cursor", f"must be at most {MAX_CURSOR_LENGTH} characters")
    return cursor


def validate_limit(limit: int, *, maximum: int, field: str = "limit") -> int:
    """0 is allowed (an empty page); negative or over ``maximum`` is an error."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValidationError(field, "must be an integer")
    if limit < 0:
        raise ValidationError(field, "must be >= 0")
    if limit > maximum:
        raise ValidationError(field, f"must be <= {maximum}")
    return limit


#: The history window's bounds, for the library and the REST parameters alike.
MAX_HISTORY_MESSAGES = 1_000_000
MAX_HISTORY_TOKENS = 10_000_000
MAX_SYSTEM_PROMPT_LENGTH = 100_000


def validate_window(
    max_messages: int | None, max_tokens: int | None, system_prompt: str | None
) -> None:
    """The history window's parameters: bounded counts and a usable system prompt."""
    if max_messages is not None:
        validate_limit(max_messages, maximum=MAX_HISTORY_MESSAGES, field="max_messages")
    if max_tokens is not None:
        validate_limit(max_tokens, maximum=MAX_HISTORY_TOKENS, field="max_tokens")
    if system_prompt is None:
        return
    if not isinstance(system_prompt, str) or not system_prompt:
        raise ValidationError("system_prompt", "must be a non-empty string")
    if len(system_prompt) > MAX_SYSTEM_PROMPT_LENGTH:
        raise ValidationError(
            "system_prompt", f"must be at most {MAX_SYSTEM_PROMPT_LENGTH} characters"
        )
    check_text("system_prompt", system_prompt)


def validate_position(value: int | None, field: str) -> int | None:
    """Positions start at 1; 0 is accepted as 'before the first'."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer")
    if value < 0:
        raise ValidationError(field, "must be >= 0")
    if value > MAX_POSITION:
        raise ValidationError(field, f"must be <= {MAX_POSITION}")
    return value


def validate_metadata(value: Any, field: str = "metadata") -> dict[str, Any] | None:
    """Conversation metadata: a JSON object or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    check_json(field, value)
    return value


# ------------------------------------------------------------------------- retention

__all__ += ["format_retention", "normalize_retention", "parse_retention"]  # one rule, here too


def validate_hold(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("hold", "must be true or false")
    return value


# ------------------------------------------------------------------------ fast build

_Model = TypeVar("_Model", bound=BaseModel)
_FIELDS_SET: dict[type[BaseModel], set[str]] = {}
# BaseModel's instance slots, set through their descriptors: the cheapest way to fill them.
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__
_SET_DICT = object.__setattr__


def construct_trusted(cls: type[_Model], values: dict[str, Any]) -> _Model:
    """Build ``cls`` from a complete dict of values the database already holds valid.

    Same result as ``cls.model_construct(**values)`` when every field is given, without its
    per-field default handling: reading a 1,000-message conversation spends most of its
    Python time building these objects, and this is ~10x cheaper.
    """
    return construct_all(cls, (values,))[0]


def _fields_set(cls: type[BaseModel]) -> set[str]:
    fields_set = _FIELDS_SET.get(cls)
    if fields_set is None:
        fields_set = _FIELDS_SET[cls] = set(cls.model_fields)
    return fields_set


def trusted_parts(cls: type[BaseModel]) -> dict[str, Any]:
    """What :func:`construct_all` fills an instance with, by name, for code generated to
    do the same per row (``_sql.CompiledStatement.models``)."""
    return {
        "new": cls.__new__,
        "cls": cls,
        "set_dict": _SET_DICT,
        "fields_set": _fields_set(cls),
        "set_fields": _SET_FIELDS_SET,
        "set_extra": _SET_EXTRA,
        "set_private": _SET_PRIVATE,
    }


def construct_all(cls: type[_Model], records: Iterable[dict[str, Any]]) -> list[_Model]:
    """:func:`construct_trusted` for many records (one loop, no call per row)."""
    fields_set = _fields_set(cls)
    new, set_dict, set_fields = cls.__new__, _SET_DICT, _SET_FIELDS_SET
    set_extra, set_private = _SET_EXTRA, _SET_PRIVATE
    out = []
    for values in records:
        obj = new(cls)
        set_dict(obj, "__dict__", values)
        # Shared on purpose: every field is set, so pydantic never has anything to add.
        set_fields(obj, fields_set)
        set_extra(obj, None)
        set_private(obj, None)
        out.append(obj)
    return out


# ------------------------------------------------------------------------ full-text search

#: Longest search query accepted (characters).
MAX_QUERY_LENGTH = 1000
# A "quoted phrase" (closing quote optional) or a run of non-space characters.
_QUERY_CHUNK = re.compile(r'"([^"]*)"?|([^\s"]+)')
# Word characters without the underscore: letters (any script) and digits.
_WORDISH = re.compile(r"[^\W_]")
_PREFIX = re.compile(r"[^\W_]+")


class SearchQuery(BaseModel):
    """A user's search text, parsed into parts no search engine reads as syntax.

    Every whitespace-separated word, or ``"quoted phrase"``, must match (AND); a word ending
    in ``*`` matches as a prefix. Parts with no letter or digit (punctuation, emoji) are
    dropped; a query with no part left matches nothing. Each database then tokenizes the
    parts with its own rules (PostgreSQL's text-search parser, SQLite's ``unicode61``).
    """

    model_config = ConfigDict(frozen=True)

    phrases: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.phrases and not self.prefixes


def parse_search_query(query: str, field: str = "query") -> SearchQuery:
    """Validate a search text (string, at most :data:`MAX_QUERY_LENGTH` characters, no NUL
    or control characters, valid Unicode) and split it into a :class:`SearchQuery`."""
    if not isinstance(query, str):
        raise ValidationError(field, "must be a string")
    if len(query) > MAX_QUERY_LENGTH:
        raise ValidationError(
            field, f"must be at most {MAX_QUERY_LENGTH} characters (got {len(query)})"
        )
    check_text(field, query)
    if any(ord(c) < 32 and c not in "\t\n\r" or 0x7F <= ord(c) < 0xA0 for c in query):
        raise ValidationError(field, "must not contain control characters")
    phrases: list[str] = []
    prefixes: list[str] = []
    for match in _QUERY_CHUNK.finditer(query):
        quoted, bare = match.groups()
        if bare is not None and bare.endswith("*") and _PREFIX.fullmatch(bare.rstrip("*")):
            prefixes.append(bare.rstrip("*"))
            continue
        part = " ".join((quoted if quoted is not None else bare).split())
        if _WORDISH.search(part):
            phrases.append(part)
    return SearchQuery(phrases=tuple(phrases), prefixes=tuple(prefixes))
