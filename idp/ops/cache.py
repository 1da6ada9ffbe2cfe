"""Django's Redis cache backend, with one redis-py client per connection pool instead of a new one
for every cache call, and one guarded write (set_unless).

Django's RedisCacheClient.get_client builds a `redis.Redis` around the shared pool on each call, and
building one registers its ~170 response callbacks: on the introspection path, two of those cost more
than the round trips they wrap. A `redis.Redis` is safe to share between threads (each command
takes a connection from the pool), so one per pool is kept. Everything else is Django's, unchanged;
settings name this class (`idp.ops.cache.RedisCache`) where they named Django's.

It also answers a request's reads that were sent ahead in the request's rate-limit round trip
(reading_ahead, below).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django_client: Any = self  # Django's private helpers, which its type stubs do not list
        index = django_client._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = django_client._get_connection_pool(write)
            client = self._clients[index] = django_client._client(connection_pool=pool)
        return client


# KEYS[1] the key to set, KEYS[2..] keys whose presence forbids it; ARGV: the value, its seconds,
# and the value of KEYS[1] that forbids it.
_SET_UNLESS = """
for i = 2, #KEYS do
  if redis.call('exists', KEYS[i]) == 1 then return 0 end
end
if redis.call('get', KEYS[1]) == ARGV[3] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
        self._set_unless: Any = None

    def get_many(self, keys: Any, version: Any = None) -> dict[str, Any]:
        """Django's, answered from the request's read-ahead when it holds every one of `keys`."""
        if version is None and (found := _read_ahead_take(list(keys))) is not None:
            return found
        return super().get_many(keys, version)

    def set_unless(self, key: str, value: Any, timeout: int, *, absent: list[str], unless_value: int) -> bool:
        """Set `key` for `timeout` seconds in one step, unless one of the keys `absent` is there or
        `key` holds the integer `unless_value` (Django stores an int as its digits, anything else
        pickled). Whether it was set."""
        backend: Any = self  # Django's private parts, which its type stubs do not list
        django_client = backend._cache
        keys = [self.make_and_validate_key(name) for name in (key, *absent)]
        client = django_client.get_client(keys[0], write=True)
        if self._set_unless is None:
            self._set_unless = client.register_script(_SET_UNLESS)  # EVALSHA, loaded when Redis lacks it
        args = [django_client._serializer.dumps(value), timeout, unless_value]
        return bool(self._set_unless(keys=keys, args=args, client=client))


# --- Reading ahead: a request's cache reads sent in a round trip it makes anyway -------------------
# The rate-limit windows of a request go to Redis before its view runs (idp.http.ratelimit). An
# endpoint that knows, from the request alone, which cache entries its view will read (the
# introspection endpoint: its client's and the token's) declares them (idp.http.policy, read_ahead),
# and their MGET rides in that pipeline. While the view runs, get_many of those names is answered
# from what came back, each name as many times as it was declared (a name two reads share is
# declared twice); any other read, or a read beyond that, goes to Redis as before. Only reads are
# sent ahead: nothing is written or counted for a request that has not yet proved anything.


@dataclass
class _ReadAhead:
    names: Counter[str]  # read ahead, and how many reads of each are still to be answered
    values: dict[str, Any]  # of those that were there
    at: float  # time.monotonic() when the MGET was sent


_read_ahead: ContextVar[_ReadAhead | None] = ContextVar("idp_cache_read_ahead", default=None)


def read_ahead_backend(url: str) -> RedisCache | None:
    """The default cache, when it is a RedisCache on the Redis at `url` (the same server and
    database, so that reads of its entries can ride in a pipeline to `url`); else None."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache) or settings.CACHES["default"].get("LOCATION") != url:
        return None
    return backend


def read_ahead_keys(backend: RedisCache, names: list[str]) -> list[str]:
    """The Redis keys of cache entries `names`, for an MGET in someone's pipeline."""
    return [backend.make_and_validate_key(name) for name in names]


@contextmanager
def reading_ahead(backend: RedisCache, names: list[str], raw: list[Any], *, at: float) -> Iterator[None]:
    """Within it, get_many of `names` is answered from `raw` (the MGET's replies, in order), as many
    times as a name is in `names`."""
    loads = cast(Any, backend)._cache._serializer.loads
    values = {name: loads(value) for name, value in zip(names, raw, strict=True) if value is not None}
    token = _read_ahead.set(_ReadAhead(names=Counter(names), values=values, at=at))
    try:
        yield
    finally:
        _read_ahead.reset(token)


def read_ahead_at(names: list[str]) -> float | None:
    """When `names` were read ahead (time.monotonic()), if they were and are not yet taken."""
    ahead = _read_ahead.get()
    return ahead.at if ahead is not None and _holds(ahead, names) else None


def _holds(ahead: _ReadAhead, names: list[str]) -> bool:
    return all(ahead.names[name] >= count for name, count in Counter(names).items())


def _read_ahead_take(names: list[str]) -> dict[str, Any] | None:
    ahead = _read_ahead.get()
    if ahead is None or not _holds(ahead, names):
        return None
    ahead.names.subtract(names)
    return {name: ahead.values[name] for name in names if name in ahead.values}
