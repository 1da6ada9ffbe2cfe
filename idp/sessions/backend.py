"""The session engine (SESSION_ENGINE = "idp.sessions.backend"): Django's database-backed engine,
extended through its documented seam (a model subclassing AbstractBaseSession, a store
subclassing db.SessionStore), so that each session is a row with its user, sid, device, address
and clients.

The session key is never stored: BrowserSession.session_key is a DigestField, so the key is
hashed on insert and on every lookup Django makes (load, exists, delete). Everything lives in the
database, so any web process serves any session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.db import IntegrityError, router, transaction
from django.utils import timezone

import audit
from idp.models import BrowserSession
from idp.sessions.services import session_end_by_key

# Stored in the session data by idp.oauth.sessions; copied to the row's columns at each save.
SID_KEY = "idp_sid"
CLIENTS_KEY = "idp_clients"
# Last active is written at most this often for a session that is only read: not on every request.
TOUCH_SECONDS = 60


@dataclass(frozen=True)
class Origin:
    """Where a new session comes from: set by idp.sessions.middleware, copied on insert only."""

    user_agent: str
    ip_address: str | None
    issuer: str


def _user_id(data: dict[str, Any]) -> int | None:
    try:
        return int(data[SESSION_KEY])
    except (KeyError, TypeError, ValueError):
        return None


def _columns(data: dict[str, Any]) -> dict[str, Any]:
    sid = data.get(SID_KEY)
    clients = data.get(CLIENTS_KEY)
    return {
        "user_id": _user_id(data),
        "sid": sid if isinstance(sid, str) else "",
        "client_ids": [c for c in clients if isinstance(c, str)] if isinstance(clients, list) else [],
    }


class SessionStore(DbSessionStore):
    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self.origin_of: Callable[[], Origin] | None = None  # set by idp.sessions.middleware
        self.row: BrowserSession | None = None  # the row this store loaded or inserted
        self._carried: BrowserSession | None = None

    @classmethod
    def get_model_class(cls) -> type[BrowserSession]:
        return BrowserSession

    def _get_session_from_db(self) -> Any:
        self.row = super()._get_session_from_db()  # type: ignore[misc] # Django's, not in the stubs
        return self.row

    def cycle_key(self) -> None:
        """A new key for the same session (Django does this at sign-in, against session fixation):
        the row keeps its public id, start and origin. The old row goes before the new one is
        inserted (Django inserts first), as both would hold the same public id."""
        data = self._session  # type: ignore[attr-defined] # SessionBase's, untyped
        old_key = self.session_key
        self._carried = self.row
        if old_key:
            self.delete(old_key)
        self.create()
        self._session_cache = data

    def flush(self) -> None:
        """Django flushes a session when the browser signs in as someone else (django.contrib.auth.
        login), or as the same person after a password change elsewhere. The session a user was
        signed in with then ends through the one path (its tokens revoked, its clients told,
        session.ended): its row is about to go from the user's sessions page, and what it issued
        must not live on where nobody sees it. At sign-out it has ended already: nothing is found."""
        if self.session_key is not None:
            session_end_by_key(session_key=self.session_key, actor=audit.Actor.system("sessions"), reason="flushed")
        super().flush()

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
        if session_key is None:
            return
        BrowserSession.objects.filter(session_key=session_key).delete()
        if session_key == self.session_key:
            self.row = None

    def save(self, must_create: bool = False) -> None:
        """Insert (must_create) or update the row: the data and the columns copied from it. An
        update that finds no row (the session was ended meanwhile) raises UpdateError, which
        Django's middleware answers 400 rather than bringing the session back."""
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        now = timezone.now()
        columns = {
            "session_data": self.encode(data),
            "expire_date": self.get_expiry_date(),
            "last_active_at": now,
            **_columns(data),
        }
        using = router.db_for_write(BrowserSession)
        if not must_create:
            with transaction.atomic(using=using):
                updated = BrowserSession.objects.using(using).filter(session_key=self.session_key).update(**columns)
            if not updated:
                raise UpdateError
            return None
        carried, self._carried = self._carried, None
        origin = self.origin_of() if self.origin_of is not None else None
        row = BrowserSession(session_key=self.session_key, **columns)
        if carried is not None:
            row.public_id, row.created_at = carried.public_id, carried.created_at
            row.user_agent, row.ip_address, row.issuer = carried.user_agent, carried.ip_address, carried.issuer
        elif origin is not None:
            row.user_agent, row.ip_address, row.issuer = origin.user_agent, origin.ip_address, origin.issuer
            row.created_at = now
        try:
            with transaction.atomic(using=using):
                row.save(force_insert=True, using=using)
        except IntegrityError:
            raise CreateError from None
        self.row = row
        return None

    def touch(self, *, now: Any = None) -> None:
        """Last active, for a session read but not saved: written when it is more than
        TOUCH_SECONDS old, in one conditional UPDATE."""
        row = self.row
        now = now or timezone.now()
        if row is None or row.last_active_at > now - timedelta(seconds=TOUCH_SECONDS):
            return
        BrowserSession.objects.filter(pk=row.pk, last_active_at__lte=now - timedelta(seconds=TOUCH_SECONDS)).update(
            last_active_at=now
        )
        row.last_active_at = now
