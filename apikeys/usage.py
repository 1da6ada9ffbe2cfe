"""When each API key was last used, kept off the request path.

The request that verified a key notes the moment in one Redis hash (one HSET: a round trip, no
database write, no commit); the periodic task ``record-apikey-uses`` (apikeys.tasks, every 10 s)
takes the hash and writes `last_used_at` in one transaction, and removes only the entries it wrote:
a use noted meanwhile stays for the next run. `last_used_at` only moves forward, so an old note
never overwrites a newer time. Without Redis (the embedded default of development, or Redis down)
nothing is noted; apikeys.services decides what to do then.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from typing import cast

import redis
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

LAST_USED_KEY = "idp:apikey:last-used"
# Deletes each taken field only if it still holds the value taken: HDEL of what was written, never
# of a use noted after the task read the hash.
_FORGET = """
local removed = 0
for i = 1, #ARGV, 2 do
    if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
        removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
    end
end
return removed
"""


@cache
def _client(url: str) -> redis.Redis:
    # Short timeouts: a request must not wait long for bookkeeping.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def usage_available() -> bool:
    return bool(settings.REDIS_URL)


def usage_note(*, public_id: str, now: datetime) -> None:
    """Note that the key `public_id` was used at `now` (by public id, not row id: random and never
    reused, even by a restored database). A Redis failure loses the note, with a warning: a key
    that verified is never refused for want of bookkeeping."""
    try:
        _client(settings.REDIS_URL).hset(LAST_USED_KEY, public_id, f"{now.timestamp():.6f}")
    except RedisError:
        logger.warning("API key last use not recorded: Redis is unavailable", exc_info=True)


def usage_pending(*, batch: int) -> dict[str, str]:
    """Some of the noted uses not yet written, about `batch` of them (one HSCAN, never the whole
    hash in one call): public id -> epoch seconds, as stored."""
    _, raw = _client(settings.REDIS_URL).hscan(LAST_USED_KEY, 0, count=batch)
    return {field.decode(): value.decode() for field, value in cast(dict[bytes, bytes], raw).items()}


def usage_forget(taken: dict[str, str]) -> int:
    """Remove the entries of `taken` that nobody has noted again since; how many."""
    if not taken:
        return 0
    flat = [part for field, value in taken.items() for part in (field, value)]
    return int(_client(settings.REDIS_URL).eval(_FORGET, 1, LAST_USED_KEY, *flat))


def usage_time(value: str) -> datetime:
    return datetime.fromtimestamp(float(value), tz=UTC)
