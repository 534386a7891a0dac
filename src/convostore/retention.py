"""Retention policies as text: ``"30d"``, ``"12h"``, ``"90m"``, ``"3600s"``, ``"2w"``, ``"none"``.

    >>> parse_retention("30d")
    2592000
    >>> format_retention(parse_retention("720h"))
    '30d'

One parser for the library, the REST API and the settings (which are read while the models
are defined, so this module imports nothing else of convostore's but its errors).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from convostore.errors import ValidationError

__all__ = [
    "MAX_RETENTION_SECONDS",
    "NO_RETENTION",
    "format_retention",
    "normalize_retention",
    "parse_retention",
]

#: A lifetime longer than this (100 years) is a mistake, and could overflow a timestamp.
MAX_RETENTION_SECONDS = 100 * 365 * 86_400
_RETENTION_UNITS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_RETENTION = re.compile(r"^\s*(\d{1,12})\s*([wdhms])\s*$")
#: The explicit "never expires" policy.
NO_RETENTION = "none"


def parse_retention(value: Any, field: str = "retention") -> int | None:
    """A retention policy in seconds (``None``: never expires), from ``"30d"``, ``"12h"``,
    ``"90m"``, ``"3600s"``, ``"2w"`` or ``"none"`` (or a ``timedelta``).

    The one parser for the library, the REST API and the settings.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds):
            raise ValidationError(field, "must be a whole number of seconds")
        return _bounded_retention(int(seconds), field)
    if not isinstance(value, str):
        raise ValidationError(field, 'must be a duration such as "30d", "12h" or "none"')
    if value.strip().lower() == NO_RETENTION:
        return None
    match = _RETENTION.match(value.lower())
    if match is None:
        raise ValidationError(
            field, 'must be a number and a unit (w, d, h, m, s), e.g. "30d", or "none"'
        )
    return _bounded_retention(int(match[1]) * _RETENTION_UNITS[match[2]], field)


def _bounded_retention(seconds: int, field: str) -> int:
    if seconds <= 0:
        raise ValidationError(field, "must be longer than 0 seconds")
    if seconds > MAX_RETENTION_SECONDS:
        raise ValidationError(field, "must be at most 100 years")
    return seconds


def format_retention(seconds: int | None) -> str | None:
    """The canonical text of a policy in seconds: the largest unit that divides it."""
    if seconds is None:
        return None
    for unit, size in _RETENTION_UNITS.items():
        if unit != "w" and seconds % size == 0:  # days read better than weeks
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover  (s divides everything)


def normalize_retention(value: Any, field: str = "retention") -> str:
    """A policy validated and spelled canonically (``"720h"`` -> ``"30d"``, ``"none"``)."""
    return format_retention(parse_retention(value, field)) or NO_RETENTION
