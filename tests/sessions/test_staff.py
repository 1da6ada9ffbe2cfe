"""Staff ending users' sessions, in Django admin and the management API: only with
idp.sessions.end, and only for users holding nothing the staff member does not (so a lesser
staff member cannot keep signing an administrator out). Hostile ids and bodies answer 4xx and
end nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin import helpers

import audit
from accounts.models import ADMIN_ROLE, SESSIONS_END, Role
from accounts.services import role_grant
from audit.models import AuditEvent
from idp.models import BrowserSession
from tests.api.conftest import (  # noqa: F401 - fixtures, used by name
    ALL_PERMISSIONS,
    _fast_password_hashing,
    management,
    service_subject,
)
from tests.factories import make_staff, make_user, session_authenticated, signed_in_client
from tests.hostile import VALUES

SYSTEM = audit.Actor.system("tests")
CHANGELIST = "/admin/idp/browsersession/"


def sessions_of(user: Any, count: int = 2) -> list[BrowserSession]:
    """The user signed in in `count` browsers (Django test clients: real session rows)."""
    for _ in range(count):
        signed_in_client(user, second_factor=False)
    return list(BrowserSession.objects.filter(user=user).order_by("pk"))


def administrator() -> Any:
    user = make_user()
    role_grant(role=Role.objects.get(name=ADMIN_ROLE, application__isnull=True), user=user, actor=SYSTEM)
    return user


# --- Management API ---------------------------------------------------------------------------------


@pytest.fixture
def ender(service_subject):  # noqa: F811
    subject = service_subject()
    subject.hold([*ALL_PERMISSIONS, SESSIONS_END])
    return subject


def test_api_lists_ends_one_and_ends_all_of_a_users_sessions(ender):
    alice = make_user()
    first, second = sessions_of(alice)
    api = ender.api()

    listed = api.get(f"/users/{alice.pk}/sessions/")
    assert listed.status_code == 200, listed.text
    assert {row["id"] for row in listed.json()} == {first.public_id, second.public_id}
    assert set(listed.json()[0]) == {
        "id", "device", "user_agent", "ip_address", "created_at", "last_active_at", "applications"
    }  # fmt: skip
    assert all(len(row["id"]) < 40 for row in listed.json())

    assert api.delete(f"/users/{alice.pk}/sessions/{first.public_id}/").status_code == 204
    assert list(BrowserSession.objects.filter(user=alice)) == [second]
    assert api.delete(f"/users/{alice.pk}/sessions/{first.public_id}/").status_code == 404, "already ended"

    ended = api.post(f"/users/{alice.pk}/sessions/end/", {"reason": "laptop stolen"})
    assert ended.status_code == 200 and ended.json() == {"ended": 1}
    assert not BrowserSession.objects.filter(user=alice).exists()
    events = AuditEvent.objects.filter(action="session.ended", target_id=str(alice.pk)).order_by("created_at")
    assert [(e.actor_type, e.data["reason"]) for e in events] == [
        ("client", "staff: api"),
        ("client", "staff: laptop stolen"),
    ]


def test_api_needs_the_permission(service_subject):  # noqa: F811
    subject = service_subject()
    subject.hold([p for p in ALL_PERMISSIONS if p != SESSIONS_END])
    alice = make_user()
    (row,) = sessions_of(alice, 1)
    api = subject.api()
    assert api.get(f"/users/{alice.pk}/sessions/").status_code == 403
    assert api.delete(f"/users/{alice.pk}/sessions/{row.public_id}/").status_code == 403
    assert api.post(f"/users/{alice.pk}/sessions/end/", {}).status_code == 403
    assert BrowserSession.objects.filter(user=alice).count() == 1


def test_api_a_lesser_staff_member_cannot_sign_an_administrator_out(service_subject):  # noqa: F811
    subject = service_subject()
    subject.hold([SESSIONS_END])
    target = administrator()
    (row,) = sessions_of(target, 1)
    api = subject.api()
    for reply in (
        api.get(f"/users/{target.pk}/sessions/"),
        api.delete(f"/users/{target.pk}/sessions/{row.public_id}/"),
        api.post(f"/users/{target.pk}/sessions/end/", {}),
    ):
        assert reply.status_code == 403 and reply.json()["error"] == "access_denied", reply.text
    assert BrowserSession.objects.filter(user=target).count() == 1
    assert not AuditEvent.objects.filter(action="session.ended").exists()


def test_hostile_session_ids_and_bodies_at_the_api_end_nothing(ender):
    alice, bob = make_user(), make_user()
    (alices,) = sessions_of(alice, 1)
    sessions_of(bob, 1)
    api = ender.api()
    # Another user's session id under this user: the same 404 as one that does not exist.
    assert api.delete(f"/users/{bob.pk}/sessions/{alices.public_id}/").status_code == 404
    assert api.delete(f"/users/{bob.pk}/sessions/{alices.session_key}/").status_code == 404, "the digest is no id"
    # Not one path segment: empty, traversal, CRLF, NUL (tests/security sweeps raw paths); 10 kB
    # exceeds a file name, which the test server's static handler stats: 250 characters instead.
    values = {name: value for name, value in VALUES.items() if name not in ("empty", "traversal", "crlf", "nul")}
    values["10kb"] = "A" * 250
    for name, value in values.items():
        reply = api.delete(f"/users/{alice.pk}/sessions/{value}/")
        assert reply.status_code in (400, 404), (name, reply.status_code)
    for body in ({"reason": "x" * 201}, {"reason": 7}, {"unknown": 1}, {"reason": "a\x00b"}, [1]):
        reply = api.post(f"/users/{alice.pk}/sessions/end/", body)
        assert reply.status_code == 400, (body, reply.status_code, reply.text[:200])
    assert api.request("PUT", f"/users/{alice.pk}/sessions/end/").status_code == 405
    assert api.delete(f"/users/{alice.pk}/sessions/").status_code == 405
    assert api.get(f"/users/{10**9}/sessions/").status_code == 404
    assert BrowserSession.objects.filter(user__in=[alice, bob]).count() == 2
    assert not AuditEvent.objects.filter(action="session.ended").exists()


# --- Django admin -----------------------------------------------------------------------------------


def admin_session(client: Any, user: Any) -> Any:
    signed_in_client(user, client=client)
    session_authenticated(client, amr=["pwd", "otp", "mfa"])
    return client


def post_end(client: Any, *rows: BrowserSession) -> Any:
    return client.post(
        CHANGELIST,
        {"action": "end_sessions", helpers.ACTION_CHECKBOX_NAME: [row.pk for row in rows], "index": 0},
        follow=True,
    )


@pytest.mark.parametrize("who", ["staff holding idp.sessions.end", "superuser"])
def test_admin_ends_selected_sessions(client, db, who):
    staff = make_staff(superuser=True) if who == "superuser" else make_staff(permissions=[SESSIONS_END])
    alice = make_user()
    first, second = sessions_of(alice)
    admin_session(client, staff)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert first.public_id in text and 'value="end_sessions"' in text
    assert first.session_key not in text, "the digest is not shown"
    reply = post_end(client, first)
    assert reply.status_code == 200
    assert "Ended 1 session(s)." in reply.content.decode()
    assert list(BrowserSession.objects.filter(user=alice)) == [second]
    event = AuditEvent.objects.get(action="session.ended", target_id=str(alice.pk))
    assert (event.actor_id, event.data["reason"]) == (str(staff.pk), "staff: Django admin")


def test_admin_staff_without_the_permission_see_no_sessions(client, db):
    staff = make_staff(permissions=["idp.users.read"])
    alice = make_user()
    (row,) = sessions_of(alice, 1)
    admin_session(client, staff)
    assert client.get(CHANGELIST).status_code == 403
    post_end(client, row)
    assert BrowserSession.objects.filter(user=alice).count() == 1


def test_admin_a_lesser_staff_member_cannot_end_an_administrators_sessions(client, db):
    staff = make_staff(permissions=[SESSIONS_END])
    target, bystander = administrator(), make_user()
    (row,) = sessions_of(target, 1)
    (other,) = sessions_of(bystander, 1)
    admin_session(client, staff)
    assert row.public_id not in client.get(CHANGELIST).content.decode(), "not even listed"
    post_end(client, row, other)  # a forged selection: the administrator's row is not among those it may act on
    assert BrowserSession.objects.filter(user=target).count() == 1
    assert not AuditEvent.objects.filter(action="session.ended", target_id=str(target.pk)).exists()
