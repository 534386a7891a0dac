"""The exceptions convostore raises: one root, three kinds a caller acts on.

    ConvostoreError                 root: catch this to catch everything of ours
     +-- NotFoundError              a conversation/message/user that does not exist *for this user*
     +-- ValidationError            bad input; names the field and the rule broken
     +-- ConflictError              the request contradicts stored state
     +-- UnavailableError           the database cannot be reached or stayed locked
     +-- ConfigurationError         bad settings (e.g. an unsupported DATABASE_URL)
          +-- MissingExtraError     an optional dependency is not installed; names the extra

Another user's conversation raises exactly the same ``NotFoundError`` as a missing one, so
ids leak nothing. The REST layer maps these to HTTP status codes in one table.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "ConvostoreError",
    "MissingExtraError",
    "NotFoundError",
    "UnavailableError",
    "ValidationError",
]


class ConvostoreError(Exception):
    """Root of every error convostore raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form with a stable machine-readable ``code``."""
        return {"code": self.code, "message": self.message}


class NotFoundError(ConvostoreError):
    """The object does not exist, or belongs to another user (indistinguishable on purpose)."""

    code = "not_found"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class ValidationError(ConvostoreError, ValueError):
    """Input broke a rule; ``field`` names the input (dotted path for nested items)."""

    code = "validation_error"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


class ConflictError(ConvostoreError):
    """The request contradicts what is stored (e.g. a concurrent change won).

    ``constraint`` names the database constraint involved, for logs; the message stays
    generic because it may reach API clients.
    """

    code = "conflict"

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class UnavailableError(ConvostoreError):
    """The database could not be reached, or stayed locked past the busy timeout; retry."""

    code = "unavailable"


class ConfigurationError(ConvostoreError):
    """Settings are unusable, e.g. a database URL of an unsupported kind."""

    code = "configuration_error"


class MissingExtraError(ConfigurationError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    code = "missing_extra"

    def __init__(self, extra: str, feature: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {module!r}; "
            f"install it with: pip install 'convostore[{extra}]'"
        )
        self.extra = extra


def require_extra(module: str, extra: str, feature: str) -> Any:
    """Import ``module`` or raise ``MissingExtraError`` naming ``extra``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, feature, module) from exc
