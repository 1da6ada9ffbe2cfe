"""Readiness: can this process serve requests now? (GET /readyz, idp.ops.views.readyz; /healthz only
says the process answers.)

Each check answers for itself, and a failed check is named but never explained to the caller: the
reason (an exception's text) goes to the log only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from idp.keys.signing import signing_key_active
from idp.models import SigningKey

log = logging.getLogger("idp.ops.health")

Migration = tuple[str, str]


@functools.cache
def redis_for(url: str) -> redis.Redis:
    """A client of the Redis at `url` with short timeouts (a readiness probe must answer quickly),
    one connection pool per process (redis-py opens a new pool in a forked child by itself)."""
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    # Read at call time: the cache, the rate limits and the lockout counters all live there.
    if settings.REDIS_URL:
        redis_for(settings.REDIS_URL).ping()


@functools.cache
def _migrations_on_disk() -> tuple[frozenset[Migration], dict[Migration, tuple[Migration, ...]]]:
    """Every migration this code needs, and what each squashed one replaces. Read from disk once:
    the files cannot change under a running process (a deploy restarts it)."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    replaces = {key: tuple(node.replaces) for key, node in graph.nodes.items() if node.replaces}
    return frozenset(graph.nodes), replaces


def _migrations() -> None:
    """Nothing of ours unapplied, as `migrate --check` would say. The applied set is read every
    time (one query): the database can change under a running process, restored from a backup or
    a migration reversed, and then this process's code no longer matches its schema. Migrations
    the database has beyond ours (a newer release migrating first) do not make us unready."""
    needed, replaces = _migrations_on_disk()
    applied = set(MigrationRecorder(connection).applied_migrations())
    missing = [key for key in needed if key not in applied and not set(replaces.get(key, (key,))) <= applied]
    if missing:
        raise LookupError(f"{len(missing)} migrations not applied, e.g. {sorted(missing)[0]}")


def _signing_key() -> None:
    # The one every provider must have (OIDC Core §15.1): it signs ID tokens and JWT access tokens.
    signing_key_active(SigningKey.Algorithm.RS256)


# (name, check, needs the database): a check of data is skipped, not failed, when the database is down.
CHECKS: tuple[tuple[str, Callable[[], None], bool], ...] = (
    ("database", _database, False),
    ("redis", _redis, False),
    ("migrations", _migrations, True),
    ("signing_key", _signing_key, True),
)


def readiness_failures() -> list[str]:
    """Names of the checks that fail, in CHECKS order; empty when ready. With the database down,
    only "database" is named among the checks that need it: it is the cause, the others follow."""
    failed: list[str] = []
    for name, check, needs_database in CHECKS:
        if needs_database and "database" in failed:
            continue
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - whatever the reason, the answer is "not ready"
            log.warning("readyz: %s check failed (%s: %s)", name, type(exc).__name__, exc)
            failed.append(name)
    return failed
