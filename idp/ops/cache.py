"""Django's Redis cache backend, with one redis-py client per connection pool instead of a new one
for every cache call, and one guarded write (set_unless).

Django's RedisCacheClient.get_client builds a `redis.Redis` around the shared pool on each call, and
building one registers its ~170 response callbacks: on the introspection path, two of those cost more
than the round trips they wrap. A `redis.Redis` is safe to share between threads (each command
takes a connection from the pool), so one per pool is kept. Everything else is Django's, unchanged;
settings name this class (`idp.ops.cache.RedisCache`) where they named Django's.
"""

from __future__ import annotations

from typing import Any

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
