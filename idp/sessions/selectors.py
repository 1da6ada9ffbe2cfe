"""Reading sessions: a user's, one of a user's (404 for anyone else's), and what a page shows of
each (device, clients)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from accounts.models import RoleAssignment
from accounts.selectors import Caller, caller_holdings
from idp.models import Application, BrowserSession

PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # secrets.token_urlsafe's alphabet


def sessions_of_user(*, user_id: int) -> QuerySet[BrowserSession]:
    """A user's sessions that have not expired, the most recently active first."""
    from django.utils import timezone

    return BrowserSession.objects.filter(user_id=user_id, expire_date__gt=timezone.now()).order_by(
        "-last_active_at", "-created_at"
    )


def session_get_for_user(*, user_id: int, public_id: str) -> BrowserSession:
    """One of the user's sessions by its public id; the same 404 for one that does not exist and
    one that is someone else's."""
    if not isinstance(public_id, str) or PUBLIC_ID.fullmatch(public_id) is None:
        raise Http404  # never queried: a NUL byte would be a database error, not a miss
    found = sessions_of_user(user_id=user_id).filter(public_id=public_id).first()
    if found is None:
        raise Http404
    return found


def sessions_staff_may_end(*, caller: Caller) -> QuerySet[BrowserSession]:
    """The signed-in sessions a staff member may see and end: services.staff_may_end_check's rule
    for every user at once. Users holding no role the caller does not (their permissions come
    with their roles), and staff accounts only for an operator (or the caller's own)."""
    rows = BrowserSession.objects.filter(user__isnull=False)
    if caller.is_operator:
        return rows
    lacked = RoleAssignment.objects.exclude(role_id__in=caller_holdings(caller=caller).role_ids).filter(
        Q(user_id=OuterRef("user_id")) | Q(group__user__id=OuterRef("user_id"))
    )
    rows = rows.exclude(Exists(lacked))
    not_staff = Q(user__is_staff=False, user__is_superuser=False)
    return rows.filter(not_staff | Q(user_id=caller.user_id)) if caller.user_id is not None else rows.filter(not_staff)


@functools.lru_cache(maxsize=1024)
def device_of(user_agent: str) -> str:
    """ "Firefox 128 on Windows": the browser and system a user agent names (ua-parser's rules)."""
    if not user_agent:
        return "Unknown device"
    from ua_parser import parse

    result = parse(user_agent)
    browser = result.user_agent
    system = result.os
    name = "Unknown browser"
    if browser is not None and browser.family != "Other":
        name = f"{browser.family} {browser.major}" if browser.major else browser.family
    if system is not None and system.family != "Other":
        name += f" on {system.family}"
    if result.device is not None and result.device.family not in ("Other", "") and result.device.brand:
        name += f" ({result.device.brand} {result.device.model or ''})".rstrip()
    return name


@dataclass(frozen=True)
class SessionView:
    """A session as pages and the API show it: never its key."""

    public_id: str
    device: str
    user_agent: str
    ip_address: str | None
    created_at: datetime
    last_active_at: datetime
    applications: list[str]
    is_current: bool


def session_views(sessions: list[BrowserSession], *, current_key: str | None = None) -> list[SessionView]:
    """What to show of each session: the device and the names of the clients signed in through it;
    `current_key` (the request's own session key) marks "this device"."""
    from idp.models import DigestField

    current = DigestField().get_prep_value(current_key) if current_key else None
    client_ids = {client_id for row in sessions for client_id in row.client_ids}
    names = dict(Application.objects.filter(client_id__in=client_ids).values_list("client_id", "name"))
    return [
        SessionView(
            public_id=row.public_id,
            device=device_of(row.user_agent),
            user_agent=row.user_agent,
            ip_address=row.ip_address,
            created_at=row.created_at,
            last_active_at=row.last_active_at,
            applications=[names[c] or c for c in row.client_ids if c in names],
            is_current=current is not None and row.session_key == current,
        )
        for row in sessions
    ]
