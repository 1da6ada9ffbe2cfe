"""Introspection answers of opaque access tokens and API keys, kept in the shared cache (Redis) so
that a credential a resource server asks about again is answered with one cache read and no
database query.

What an answer depends on, and what makes it stale:
- the credential itself: DOT revokes a token by deleting the row, on every path (revocation
  endpoint, refresh rotation, reuse detection, sign-out, deactivation, the admin), and an admin may
  edit it; an API key is revoked, rotated, given other roles or deleted by saving it. Each delete or
  change overwrites the credential's entry with a tombstone and sets a "changed" marker beside it
  (token_changed, apikey_changed), before the transaction commits (and so before any revocation's
  response is sent) and again after. While either lives the database answers. An answer is kept
  only in one step with the check that neither is there (RedisCache.set_unless), so a request that
  read the row before the change committed cannot write over the tombstone; and it is kept for no
  longer than a marker set after that request looked would live, so it cannot outlive the marker
  either. Losing one of the two to eviction still leaves the other (an evicted tombstone takes the
  stale entry with it);
- its client, its user and their roles: each entry carries the generation marks of the client
  cache, the role cache (accounts.selectors.MarkedCache) and of users (users_changed), read in the
  same round trip as the entry; any change to any of them makes every entry stale at once.

Only active answers are kept (nobody fills Redis with guesses), for at most KEEP_SECONDS and never
past the credential's expiry. An API key's entry holds its stored digest, which the presented key
is checked against (in constant time) exactly as the database row would be. Without a shared cache
nothing is kept. When Redis cannot be read, the database answers; when a credential's marker cannot
be written, the change fails (its transaction rolls back) rather than leave an answer that would
say "active" once Redis is back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from accounts.selectors import access_cache
from apikeys.models import ApiKey
from idp.models import AccessToken
from idp.oauth.clients import client_cache
from idp.ops.cache import read_ahead_at

logger = logging.getLogger(__name__)

ENTRY_PREFIX = "idp:introspect:"
CHANGED_PREFIX = "idp:introspect-changed:"
USERS_MARK = "idp:introspect-users:mark"
# Invalidation is by the markers and marks; the lifetime bounds only what an unsignalled change
# (raw SQL) would leave.
KEEP_SECONDS = 60
# How long a change's tombstone and marker live, from the change and again from its commit. (A new
# API key's roles are a change too: it is answered from the database in its first minute.)
CHANGED_SECONDS = 60
# An answer kept by a request expires this long before any marker set after the request looked.
_KEEP_MARGIN_SECONDS = 2
TOMBSTONE = 1  # an entry's value after a change; entries are otherwise (marks, kept) pairs

# A user's save that changes nothing an answer holds: sign-in stamps last_login, and may upgrade
# the password's hash.
_USER_FIELDS_NOT_ANSWERED = frozenset({"last_login", "password"})


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for one credential: what was kept with a still good answer (`kept`), or
    the marks a fresh answer may be kept under (None: keep nothing)."""

    kept: Any = None
    marks: tuple[str, ...] | None = None
    looked_at: float = 0.0  # time.monotonic() of the lookup


_NOTHING = Lookup()


def _enabled() -> bool:
    return bool(settings.CACHES["default"]["BACKEND"] == "idp.ops.cache.RedisCache")


def checksum_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_entry(checksum: str) -> str:
    """The name of an opaque access token's entry, by the SHA-256 checksum DOT stores."""
    return f"token:{checksum}"


def apikey_entry(public_id: str) -> str:
    """The name of an API key's entry, by its public id."""
    return f"apikey:{public_id}"


def entry_key(name: str) -> str:
    return ENTRY_PREFIX + name


def changed_key(name: str) -> str:
    return CHANGED_PREFIX + name


def _mark_keys() -> list[str]:
    return [access_cache.mark_key, client_cache.mark_key, USERS_MARK]


def lookup_names(name: str) -> list[str]:
    """The cache entries answer_lookup(name=name) reads, in one get_many (to read them ahead)."""
    return [entry_key(name), changed_key(name), *_mark_keys()]


def answer_lookup(*, name: str) -> Lookup:
    """The entry `name` (token_entry, apikey_entry), its changed marker and the current marks, in
    one round trip (or from the request's read-ahead: idp.ops.cache)."""
    if not _enabled():
        return _NOTHING
    names = lookup_names(name)
    key, changed, mark_keys = names[0], names[1], names[2:]
    # When they were read: an answer kept now must not outlive a marker set after that.
    read_at = read_ahead_at(names)
    looked_at = read_at if read_at is not None else time.monotonic()
    try:
        found = cache.get_many(names)
        if found.get(changed) is not None or found.get(key) == TOMBSTONE:
            return _NOTHING
        marks = tuple(found.get(name) or _mark_add(name) for name in mark_keys)
    except Exception:  # noqa: BLE001 - any failure of the cache's client: the database answers
        logger.warning("shared cache unavailable; introspection reads the database", exc_info=True)
        return _NOTHING
    if any(mark is None for mark in marks):
        return _NOTHING  # a mark another process set meanwhile: its value is unknown here
    current = cast(tuple[str, ...], marks)
    entry = found.get(key)
    if entry is not None:
        kept_marks, kept = entry
        if kept_marks == current:
            return Lookup(kept=kept)
    return Lookup(marks=current, looked_at=looked_at)


def _mark_add(name: str) -> str | None:
    """A mark where none is (first use, or Redis emptied): the one added, or None when another
    process added one first."""
    mark = uuid.uuid4().hex
    return mark if cache.add(name, mark, timeout=None) else None


def answer_keep(*, name: str, lookup: Lookup, kept: Any, expires_at: datetime | None) -> None:
    """Keep what an active answer read from the database needs (`kept`), under the marks seen before
    reading it: unless the credential changed meanwhile (its tombstone or marker is there), for at
    most KEEP_SECONDS, never past `expires_at`, and never past a marker set after the lookup."""
    if lookup.marks is None:
        return
    since_lookup = math.ceil(time.monotonic() - lookup.looked_at)
    seconds = min(KEEP_SECONDS, CHANGED_SECONDS - since_lookup - _KEEP_MARGIN_SECONDS)
    if expires_at is not None:
        seconds = min(seconds, int(expires_at.timestamp() - time.time()))
    if seconds < 1:
        return
    try:
        cast(Any, cache).set_unless(
            entry_key(name), (lookup.marks, kept), seconds, absent=[changed_key(name)], unless_value=TOMBSTONE
        )
    except Exception:  # noqa: BLE001 - nothing kept; the next request reads the database again
        logger.warning("shared cache unavailable; introspection answer not kept", exc_info=True)


def token_changed(sender: type[AccessToken], instance: AccessToken, created: bool = False, **kwargs: Any) -> None:
    """post_save and post_delete of an AccessToken: its kept answer, if any, counts for nothing from
    now on, in every process. A new row has no entry yet. Raises when Redis cannot be written: the
    revocation fails rather than leave its token answered active."""
    if created or not _enabled() or not instance.token_checksum:
        return
    _mark_changed([token_entry(instance.token_checksum)])


def apikey_changed(sender: Any, instance: ApiKey, created: bool = False, **kwargs: Any) -> None:
    """post_save and post_delete of an ApiKey: as token_changed. Keys written in bulk (last uses,
    wiping a pending secret) change nothing an answer holds."""
    if created or not _enabled():
        return
    _apikeys_mark_changed([instance.public_id])


def apikey_roles_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any) -> None:
    """m2m_changed of ApiKey.roles, from the key's side (instance: the key) or the role's (pk_set:
    the keys; a clear: all of the role's keys, read before they go)."""
    if not _enabled() or action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        _apikeys_mark_changed([instance.public_id])
    elif action == "pre_clear":
        _apikeys_mark_changed(list(instance.api_keys.values_list("public_id", flat=True)))
    else:
        _apikeys_mark_changed(list(ApiKey.objects.filter(pk__in=pk_set or ()).values_list("public_id", flat=True)))


def _apikeys_mark_changed(public_ids: list[str]) -> None:
    _mark_changed([apikey_entry(public_id) for public_id in public_ids])


def _mark_changed(names: list[str]) -> None:
    """Overwrite these entries with tombstones and set their changed markers, now and again once the
    change commits (so that both last CHANGED_SECONDS past the commit, however long the transaction
    took). Should the second write fail, the first stands, and Django logs the failure as an error."""
    if not names:
        return
    markers = {changed_key(name): True for name in names} | {entry_key(name): TOMBSTONE for name in names}
    cache.set_many(markers, timeout=CHANGED_SECONDS)
    transaction.on_commit(lambda: cache.set_many(markers, timeout=CHANGED_SECONDS), robust=True)


def users_changed(sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    """post_save and post_delete of a user (their username, or is_active: a deactivated user's tokens
    stop at once): every kept answer is stale from now on. A new user has no answer yet."""
    if created or (update_fields is not None and set(update_fields) <= _USER_FIELDS_NOT_ANSWERED):
        return
    if _enabled():
        # At once, and again after the commit: a request may read the user before the commit and
        # keep its answer under the mark replaced at once (as MarkedCache.forget).
        _users_mark_replace()
        transaction.on_commit(_users_mark_replace)


def _users_mark_replace() -> None:
    cache.set(USERS_MARK, uuid.uuid4().hex, timeout=None)
