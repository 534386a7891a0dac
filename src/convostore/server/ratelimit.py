"""Rate limits per user and per API key, reads and writes counted apart.

    CONVOSTORE_RATE_LIMIT_USER_WRITES=1200/minute    # "N/second|minute|hour|day"; "" = off

Counted with the `limits` library's moving window (no burst of twice the limit at a window
edge). A request over its limit is a 429 with ``Retry-After`` before its route runs, so
nothing past the limit is ever written. The check and the count are one step (under a lock
in memory), so concurrent requests cannot slip past it together.

Counters live in memory by default: each server process counts on its own. With several
workers or hosts, point ``CONVOSTORE_RATE_LIMIT_STORAGE`` at a shared store
(``redis://host:6379``, needs ``pip install limits[redis]``), or divide the limits by the
number of processes, or limit at the gateway in front.
"""

from __future__ import annotations

import asyncio
import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from convostore.config import Settings
from convostore.errors import ConfigurationError
from convostore.server.errors import ApiError

__all__ = ["RateLimiter", "is_write"]

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_write(method: str) -> bool:
    """Everything but GET/HEAD/OPTIONS counts as a write."""
    return method.upper() not in _READ_METHODS


def _item(name: str, value: str) -> RateLimitItem | None:
    value = value.strip()
    if not value or value.lower() in ("off", "none", "0"):
        return None
    try:
        return parse(value)
    except ValueError:
        raise ConfigurationError(
            f"{name}: {value!r} is not a rate limit (expected e.g. '120/minute')"
        ) from None


class RateLimiter:
    """The app's limits (built from the settings at start-up)."""

    def __init__(self, settings: Settings) -> None:
        prefix = "CONVOSTORE_RATE_LIMIT_"
        self.limits: dict[tuple[str, bool], RateLimitItem | None] = {
            ("user", False): _item(prefix + "USER_READS", settings.rate_limit_user_reads),
            ("user", True): _item(prefix + "USER_WRITES", settings.rate_limit_user_writes),
            ("key", False): _item(prefix + "KEY_READS", settings.rate_limit_key_reads),
            ("key", True): _item(prefix + "KEY_WRITES", settings.rate_limit_key_writes),
        }
        try:
            storage = storage_from_string(settings.rate_limit_storage)
        except Exception as exc:  # the library's own errors (unknown scheme, missing driver)
            raise ConfigurationError(f"CONVOSTORE_RATE_LIMIT_STORAGE: {exc}") from None
        if not isinstance(storage, Storage):
            raise ConfigurationError(
                "CONVOSTORE_RATE_LIMIT_STORAGE: use a plain storage URI (memory://, "
                "redis://...), not an async+ one"
            )
        self.storage: Storage = storage
        # Memory counters are a dict and a lock: no I/O, checked on the event loop itself.
        self._local = isinstance(self.storage, MemoryStorage)
        self.strategy = MovingWindowRateLimiter(self.storage)

    async def hit(self, kind: str, identity: str, write: bool) -> None:
        """Count one request of ``identity`` (a user or key); 429 if it is over the limit."""
        item = self.limits[(kind, write)]
        if item is None:
            return
        scope = f"{identity}:{'write' if write else 'read'}"
        if self._local:
            allowed = self.strategy.hit(item, scope)
        else:
            allowed = await asyncio.to_thread(self.strategy.hit, item, scope)
        if allowed:
            return
        if self._local:
            stats = self.strategy.get_window_stats(item, scope)
        else:
            stats = await asyncio.to_thread(self.strategy.get_window_stats, item, scope)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        what = "writes" if write else "reads"
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what} (limit: {item}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )
