"""Redis as the tests see it, from outside the application: its keys and their lifetimes.

Windows, cool-offs and markers that live in Redis end when Redis expires their keys, on Redis's
own clock, which time travel does not move. A test ends one by bringing the expiry forward in Redis
itself (``expire_now``) and goes on once Redis has dropped the keys, never by sleeping for a
lifetime and hoping it has passed.
"""

from __future__ import annotations

import time

import redis
from django.conf import settings

DEADLINE_SECONDS = 10


def raw_redis() -> redis.Redis:
    """A connection of its own to the cache's Redis, as another process would have."""
    return redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])


def expire_now(pattern: str) -> dict[str, int]:
    """Make every key matching `pattern` (a Redis glob over full key names) expire now, and return
    once Redis has dropped them all: {key: the seconds it had left}."""
    server = raw_redis()
    lifetimes = {key.decode(): server.ttl(key) for key in server.scan_iter(match=pattern)}
    for key in lifetimes:
        server.pexpire(key, 1)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while lifetimes and server.exists(*lifetimes):
        assert time.monotonic() < deadline, f"Redis kept {pattern} past its expiry"
        time.sleep(0.01)
    return lifetimes
