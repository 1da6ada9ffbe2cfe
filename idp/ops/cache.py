"""Django's Redis cache backend, with one redis-py client per connection pool instead of a new one
for every cache call.

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


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
