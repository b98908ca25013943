"""The cache in Redis, failing open: a cache that is down, hung or full never fails a request.

Every cached value in the portal can be computed again, so an error is a miss for a read and a no-op
for a write. After a connection error or a timeout, Redis is left alone for a few seconds (every
request would otherwise wait for the same timeout); a full Redis (`maxmemory` without eviction)
refuses only the writes, and reads go on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Flask
from flask_caching.backends.rediscache import RedisCache

logger = logging.getLogger(__name__)

# What each operation answers when Redis cannot: a miss, or "not done".
_FALLBACKS: dict[str, Any] = {
    "get": None,
    "get_many": None,  # replaced by a list of misses below
    "get_dict": None,
    "has": False,
    "set": False,
    "add": False,
    "set_many": [],
    "delete": False,
    "delete_many": [],
    "inc": None,
    "dec": None,
    "clear": False,
}


class FailSafeRedisCache(RedisCache):
    """Flask-Caching's Redis backend whose every operation falls back instead of raising."""

    def __init__(self, *args: Any, pause_seconds: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause_seconds = pause_seconds
        self._paused_until = 0.0

    @classmethod
    def factory(
        cls, app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> FailSafeRedisCache:
        timeout = config["CACHE_SOCKET_TIMEOUT"]
        client = redis.Redis.from_url(
            config["CACHE_REDIS_URL"], socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(
            host=client,
            default_timeout=config["CACHE_DEFAULT_TIMEOUT"],
            key_prefix=config.get("CACHE_KEY_PREFIX"),
            pause_seconds=config["CACHE_PAUSE_SECONDS"],
        )

    def _guarded(self, name: str, fallback: Any, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self._paused_until:
            return fallback
        try:
            return getattr(super(), name)(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._paused_until = time.monotonic() + self.pause_seconds
            logger.warning("cache unavailable, computing instead (%s: %s)", type(error).__name__, error)
        except redis.RedisError as error:  # e.g. OOM: the write is refused, Redis itself is there
            logger.warning("cache refused %s (%s: %s)", name, type(error).__name__, error)
        return fallback


def _make(name: str, fallback: Any):
    def method(self: FailSafeRedisCache, *args: Any, **kwargs: Any) -> Any:
        if name == "get_many":
            return self._guarded(name, [None] * len(args), *args, **kwargs)
        if name == "get_dict":
            return self._guarded(name, dict.fromkeys(args), *args, **kwargs)
        return self._guarded(name, fallback, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"RedisCache.{name}, falling back to {fallback!r} when Redis cannot answer."
    return method


for _name, _fallback in _FALLBACKS.items():
    setattr(FailSafeRedisCache, _name, _make(_name, _fallback))
