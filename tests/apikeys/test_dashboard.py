"""The API-key dashboard through Django's test client: who sees and may change which key, the
show-once page (a raw key in exactly one no-store response), the audit trail of every action,
CSRF, and hostile input on every form (a 4xx, nothing changed, nothing unescaped).

The whole flow in a real browser is in test_dashboard_browser.py; the fixtures (owner,
issue_key, machine) are tests/apikeys/conftest.py's.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.services import role_create, role_grant
from apikeys.models import ApiKey, KeyState
from apikeys.selectors import apikey_verify
from apikeys.services import apikeys_rotate_due
from audit.models import AuditEvent
from tests.apikeys.conftest import SYSTEM
from tests.factories import make_staff, make_user, signed_in_client

LIST = reverse("apikeys:list")
CREATE = reverse("apikeys:create")
SECRET = re.compile(r'<code id="apikey-secret"[^>]*>([^<]+)</code>')
XSS = '"><script>alert(1)</script>'
SQL = "' OR '1'='1'; DROP TABLE apikeys_apikey; --"


def url(name: str, key: ApiKey | int) -> str:
    return reverse(f"apikeys:{name}", args=[key if isinstance(key, int) else key.pk])


def shown_secret(response) -> str:
    match = SECRET.search(response.content.decode())
    assert match, "the show-once page has no key on it"
    return html.unescape(match.group(1)).strip()


def actions(key: ApiKey) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="apikey", target_id=key.public_id).values_list("action", flat=True)
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def snapshot() -> dict[str, object]:
    """What a refused request must leave as it was."""
    return {
        "keys": list(
            ApiKey.objects.order_by("pk").values_list(
                "pk",
                "revoked_at",
                "rotate_every",
                "grace_period",
                "next_rotation_at",
                "grace_ends_at",
                "pending_secret",
            )
        ),
        "audit": AuditEvent.objects.count(),
    }


@pytest.fixture
def stranger(db):
    return make_user()


@pytest.fixture
def staff(db):
    """A key manager: staff holding idp.apikeys.manage (being staff alone gives nothing)."""
    return make_staff(permissions=["idp.apikeys.manage"])


@pytest.fixture
def as_owner(client, owner):
    return signed_in_client(owner, client=client)


@pytest.fixture
def as_staff(client, staff):
    return signed_in_client(staff, client=client)


@pytest.fixture
def pending_key(issue_key):
    """A scheduler-made successor whose new secret waits for its owner: (predecessor, successor)."""
    now = timezone.now()
    old = issue_key(rotate_every=timedelta(days=1), now=now - timedelta(days=2)).key
    assert apikeys_rotate_due(now=now) == 1
    old.refresh_from_db()
    return old, old.successor


# --- Who may see what --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "list"),
        ("get", "create"),
        ("post", "create"),
        ("post", "rotate"),
        ("post", "reveal"),
        ("get", "schedule"),
        ("post", "schedule"),
        ("get", "revoke"),
        ("post", "revoke"),
    ],
)
def test_anonymous_visitors_are_sent_to_sign_in(client, admin_key, method, name):
    path = reverse(f"apikeys:{name}") if name in {"list", "create"} else url(name, admin_key.key)
    before = snapshot()
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert snapshot() == before


def test_the_list_shows_a_users_own_keys_only(client, issue_key, stranger, admin_role):
    """Without idp.apikeys.manage a person sees their own keys only."""
    reporter = role_create(name="reporter", permissions=["reports.read"], actor=SYSTEM)
    role_grant(role=reporter, user=stranger, actor=SYSTEM)
    mine = issue_key(name="my deploy key", user=stranger, role_ids=[reporter.pk]).key
    theirs = issue_key(name="their key").key
    signed_in_client(stranger, client=client)
    response = client.get(LIST)
    page = response.content.decode()
    assert response.status_code == 200
    assert mine.public_id in page and "my deploy key" in page
    assert theirs.public_id not in page and "their key" not in page
    assert ">Owner<" not in page
    assert "Active" in page and "idp.manage" in page and "reporter" in page


def test_staff_see_every_key_with_its_owner(as_staff, issue_key, owner, stranger, machine, admin_role):
    keys = [
        issue_key().key,
        issue_key(user=stranger, role_ids=[]).key,
        issue_key(user=None, application=machine.application, role_ids=[admin_role.pk]).key,
    ]
    page = as_staff.get(LIST).content.decode()
    assert all(key.public_id in page for key in keys)
    assert ">Owner<" in page
    assert owner.username in page and stranger.username in page
    assert f'{machine.application.name}<span class="note">machine client</span>' in page


def test_the_list_costs_the_same_queries_for_one_key_or_many(as_staff, issue_key, machine, admin_role):
    def queries() -> int:
        as_staff.get(LIST)  # warms the shared cache of the viewer's roles, which key changes empty
        with CaptureQueriesContext(connection) as captured:
            assert as_staff.get(LIST).status_code == 200
        return len(captured)

    issue_key()
    one = queries()
    for _ in range(3):
        issue_key(rotate_every=timedelta(days=1), now=timezone.now() - timedelta(days=2))
        issue_key(user=None, application=machine.application, role_ids=[admin_role.pk])
    apikeys_rotate_due(now=timezone.now())
    assert queries() == one


def test_the_home_page_links_to_the_dashboard(as_owner):
    assert f'href="{LIST}"' in as_owner.get(reverse("home")).content.decode()


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("post", "rotate"),
        ("post", "reveal"),
        ("get", "schedule"),
        ("post", "schedule"),
        ("get", "revoke"),
        ("post", "revoke"),
    ],
)
def test_another_users_key_is_not_found(client, stranger, admin_key, method, name):
    signed_in_client(stranger, client=client)
    before = snapshot()
    data = {"rotate_every_days": "7", "grace_hours": "1"} if method == "post" else None
    assert getattr(client, method)(url(name, admin_key.key), data).status_code == 404
    assert getattr(client, method)(url(name, 987_654_321), data).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "name"), [("post", "rotate"), ("post", "reveal"), ("get", "schedule"), ("post", "schedule")]
)
def test_staff_may_not_rotate_reveal_or_schedule_a_users_key(as_staff, pending_key, method, name):
    """Staff see a user's key, and may revoke it, but never hold its secret nor change its schedule."""
    _, successor = pending_key
    before = snapshot()
    data = {"rotate_every_days": "7", "grace_hours": "1"} if method == "post" else None
    response = getattr(as_staff, method)(url(name, successor), data)
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()
    assert snapshot() == before


def test_staff_may_revoke_a_users_key(as_staff, staff, admin_key):
    assert as_staff.get(url("revoke", admin_key.key)).status_code == 200
    response = as_staff.post(url("revoke", admin_key.key), {"reason": "leaked in a log"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="apikey.revoked", target_id=admin_key.key.public_id)
    assert (event.actor_type, event.actor_id, event.data["reason"]) == ("user", str(staff.pk), "leaked in a log")
    assert apikey_verify(presented=admin_key.secret) is None


def test_staff_rotate_a_machine_clients_key(as_staff, staff, issue_key, machine, admin_role):
    """A key manager holding every role of the machine's key (here idp-admin) rotates it."""
    role_grant(role=admin_role, user=staff, actor=SYSTEM)
    issued = issue_key(user=None, application=machine.application, role_ids=[admin_role.pk])
    response = as_staff.post(url("rotate", issued.key))
    assert response.status_code == 200
    successor = apikey_verify(presented=shown_secret(response))
    assert successor is not None and successor.key.application_id == machine.application.pk
    assert "apikey.rotated" in actions(issued.key)


# --- Create and the show-once page ---------------------------------------------------------------


def test_the_create_form_offers_key_scopes_and_the_users_roles(as_owner, admin_role, stranger):
    other_role = role_create(name="not-yours", actor=SYSTEM)
    page = as_owner.get(CREATE).content.decode()
    assert 'value="idp.manage"' in page and 'value="profile"' in page
    assert 'value="openid"' not in page and 'value="offline_access"' not in page  # sign-in only
    assert f'name="roles" value="{admin_role.pk}"' in page
    assert f'value="{other_role.pk}"' not in page


def test_creating_a_key_shows_it_once(as_owner, owner, admin_role):
    response = as_owner.post(
        CREATE,
        {
            "name": "nightly backup",
            "scopes": ["idp.manage", "profile"],
            "roles": [str(admin_role.pk)],
            "expires_in_days": "30",
            "rotate_every_days": "7",
            "grace_hours": "12",
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = shown_secret(response)
    verified = apikey_verify(presented=secret)
    assert verified is not None
    key = verified.key
    assert (key.user, key.name, key.scope_list) == (owner, "nightly backup", ["profile", "idp.manage"])
    assert list(key.roles.all()) == [admin_role]
    assert key.rotate_every == timedelta(days=7) and key.grace_period == timedelta(hours=12)
    assert key.expires_at - key.created_at == timedelta(days=30), "30 days from the moment it was made"
    assert key.next_rotation_at - key.created_at == timedelta(days=7)
    assert 'data-copy="apikey-secret"' in response.content.decode()
    event = AuditEvent.objects.get(action="apikey.created", target_id=key.public_id)
    assert (event.actor_type, event.actor_id) == ("user", str(owner.pk))

    # Never again: not on the list, not in the session, a cookie or the audit trail.
    listing = as_owner.get(LIST)
    assert key.public_id in listing.content.decode()
    assert secret not in listing.content.decode()
    assert messages_of(listing) == []
    assert secret not in json.dumps(dict(as_owner.session.items()), default=str)
    assert all(secret not in morsel.value for morsel in as_owner.cookies.values())
    assert all(secret not in json.dumps(data) for data in AuditEvent.objects.values_list("data", flat=True))


def test_a_key_with_only_a_name_has_no_scopes_roles_expiry_or_schedule(as_owner):
    response = as_owner.post(CREATE, {"name": "bare", "grace_hours": "24"})
    key = apikey_verify(presented=shown_secret(response)).key
    assert (key.scope, list(key.roles.all()), key.expires_at, key.rotate_every) == ("", [], None, None)


def test_names_that_look_like_code_are_kept_and_escaped(as_owner):
    for name in (XSS, SQL, "{{7*7}} {% debug %}"):
        response = as_owner.post(CREATE, {"name": name, "grace_hours": "24"})
        assert response.status_code == 200
        assert apikey_verify(presented=shown_secret(response)).key.name == name
    page = as_owner.get(LIST).content.decode()
    assert "<script>alert(1)" not in page
    assert html.escape(XSS) in page
    assert "{{7*7}} {% debug %}" in page  # shown as text, never evaluated


# --- Rotate, reveal, schedule, revoke ------------------------------------------------------------


def test_rotating_now_shows_the_successor_once_and_keeps_the_old_key_in_grace(as_owner, owner, admin_key):
    old = admin_key.key
    response = as_owner.post(url("rotate", old))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new = apikey_verify(presented=shown_secret(response))
    assert new is not None and new.key.rotated_from_id == old.pk
    old.refresh_from_db()
    assert old.state(timezone.now()) == KeyState.GRACE
    assert apikey_verify(presented=admin_key.secret) is not None  # still works during the grace period
    event = AuditEvent.objects.get(action="apikey.rotated", target_id=old.public_id)
    assert (event.actor_id, event.data["successor"]) == (str(owner.pk), new.key.public_id)
    page = as_owner.get(LIST).content.decode()
    assert f"Replaced by <code>{new.key.public_id}</code>" in page
    assert f"Replaces <code>{old.public_id}</code>" in page
    assert "Rotated (grace period)" in page


def test_rotating_a_rotated_key_is_an_error_message(as_owner, admin_key):
    as_owner.post(url("rotate", admin_key.key))
    before = snapshot()
    response = as_owner.post(url("rotate", admin_key.key), follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert messages_of(response) == [
        f"{admin_key.key.public_id} was not rotated: this key was already rotated; rotate its successor"
    ]
    assert snapshot() == before


def test_a_pending_rotated_key_is_revealed_once(as_owner, owner, pending_key):
    old, successor = pending_key
    page = as_owner.get(LIST).content.decode()
    assert "New key waiting to be revealed" in page
    assert successor.pending_secret not in page
    assert url("reveal", successor) in page

    response = as_owner.post(url("reveal", successor))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = shown_secret(response)
    assert apikey_verify(presented=secret).key == successor
    assert f"replaces <code>{old.public_id}</code>" in response.content.decode()
    successor.refresh_from_db()
    assert successor.pending_secret == ""
    event = AuditEvent.objects.get(action="apikey.revealed", target_id=successor.public_id)
    assert (event.actor_type, event.actor_id) == ("user", str(owner.pk))

    again = as_owner.post(url("reveal", successor), follow=True)
    assert messages_of(again) == [f"{successor.public_id}: there is no new key waiting to be revealed"]
    assert secret not in again.content.decode()
    assert "New key waiting to be revealed" not in again.content.decode()


def test_a_pending_key_past_its_predecessors_grace_period_is_not_offered(as_owner, issue_key):
    """Its secret is as good as wiped once the old key stopped working, even before the sweep ran."""
    now = timezone.now()
    old = issue_key(rotate_every=timedelta(days=1), grace_period=timedelta(hours=1), now=now - timedelta(days=10)).key
    apikeys_rotate_due(now=now - timedelta(days=5))
    successor = ApiKey.objects.get(rotated_from=old)
    assert successor.pending_secret != ""
    page = as_owner.get(LIST).content.decode()
    assert successor.public_id in page
    assert "New key waiting to be revealed" not in page
    assert url("reveal", successor) not in page
    response = as_owner.post(url("reveal", successor), follow=True)
    assert messages_of(response) == [f"{successor.public_id}: there is no new key waiting to be revealed"]
    assert "apikey.revealed" not in actions(successor)


def test_setting_and_clearing_a_schedule(as_owner, owner, admin_key):
    key = admin_key.key
    form = as_owner.get(url("schedule", key))
    assert form.status_code == 200
    assert 'name="grace_hours" value="24"' in form.content.decode()

    scheduled_at = timezone.now()
    with time_machine.travel(scheduled_at, tick=False):  # the clock the page reads, held still
        response = as_owner.post(url("schedule", key), {"rotate_every_days": "30", "grace_hours": "48"}, follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert messages_of(response) == [f"{key.public_id} now rotates every 30 days."]
    key.refresh_from_db()
    assert (key.rotate_every, key.grace_period) == (timedelta(days=30), timedelta(hours=48))
    assert key.next_rotation_at == scheduled_at + timedelta(days=30)
    assert "Every 30 days" in response.content.decode()
    assert 'name="rotate_every_days" value="30"' in as_owner.get(url("schedule", key)).content.decode()

    response = as_owner.post(url("schedule", key), {"rotate_every_days": "", "grace_hours": "0"}, follow=True)
    assert messages_of(response) == [f"{key.public_id} now rotates only by hand."]
    key.refresh_from_db()
    assert (key.rotate_every, key.grace_period, key.next_rotation_at) == (None, timedelta(0), None)
    events = AuditEvent.objects.filter(action="apikey.scheduled", target_id=key.public_id, actor_id=str(owner.pk))
    assert [event.data["rotate_every_seconds"] for event in events] == [30 * 86400, None]


def test_scheduling_a_rotated_key_is_a_form_error(as_owner, admin_key):
    as_owner.post(url("rotate", admin_key.key))
    before = snapshot()
    response = as_owner.post(url("schedule", admin_key.key), {"rotate_every_days": "7", "grace_hours": "1"})
    assert response.status_code == 400
    assert "only a usable key that was not rotated yet can be scheduled" in response.content.decode()
    assert snapshot() == before


def test_revoking_asks_first_then_revokes(as_owner, owner, admin_key):
    key = admin_key.key
    confirm = as_owner.get(url("revoke", key))
    assert confirm.status_code == 200
    assert "Revoke this key?" in confirm.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None  # the GET only asks

    response = as_owner.post(url("revoke", key), {"reason": "no longer needed"}, follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert messages_of(response) == [f"{key.public_id} is revoked: it no longer works."]
    assert apikey_verify(presented=admin_key.secret) is None
    row = re.search(rf'<tr id="key-{key.public_id}".*?</tr>', response.content.decode(), re.S).group(0)
    assert "Revoked" in row and "Rotate now" not in row and ">Revoke<span" not in row
    event = AuditEvent.objects.get(action="apikey.revoked", target_id=key.public_id)
    assert (event.actor_id, event.data["reason"]) == (str(owner.pk), "no longer needed")

    again = as_owner.post(url("revoke", key), {"reason": ""}, follow=True)
    assert messages_of(again) == [f"{key.public_id} was already revoked."]
    assert actions(key).count("apikey.revoked") == 1


@pytest.mark.parametrize("name", ["rotate", "reveal"])
def test_actions_that_change_a_key_refuse_get(as_owner, admin_key, name):
    before = snapshot()
    assert as_owner.get(url(name, admin_key.key)).status_code == 405
    assert snapshot() == before


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("create", {"name": "csrf", "grace_hours": "24"}),
        ("rotate", {}),
        ("reveal", {}),
        ("schedule", {"rotate_every_days": "7", "grace_hours": "1"}),
        ("revoke", {"reason": "csrf"}),
    ],
)
def test_forms_need_the_csrf_token(owner, admin_key, name, data):
    browser = signed_in_client(owner, enforce_csrf_checks=True)
    before = snapshot()
    path = CREATE if name == "create" else url(name, admin_key.key)
    assert browser.post(path, data).status_code == 403
    assert snapshot() == before


# --- Hostile input (every other hostile-input test is listed in tests/hostile.py) --------------

TOO_BIG = "99999999999999999999999999"
BAD_NUMBERS = ["abc", "1.5", "1e3", "NaN", "-1", "0x10", TOO_BIG, "1\x00", XSS, SQL]
VALID_CREATE = {"name": "hostile", "scopes": ["profile"], "grace_hours": "24"}

CREATE_CASES = [
    ("name", "N" * 10_240),
    ("name", "na\x00me"),
    ("name", "N" * 101),
    ("name", ""),
    ("name", "   "),
    ("scopes", "openid"),
    ("scopes", "offline_access"),
    ("scopes", "no-such-scope"),
    ("scopes", XSS),
    ("scopes", SQL),
    ("roles", "abc"),
    ("roles", "-1"),
    ("roles", "987654321"),
    ("roles", TOO_BIG),
    ("roles", XSS),
    ("roles", "NOT_HELD"),
    ("expires_in_days", "0"),
    ("expires_in_days", "3651"),
    *[("expires_in_days", value) for value in BAD_NUMBERS],
    ("rotate_every_days", "0"),
    ("rotate_every_days", "366"),
    *[("rotate_every_days", value) for value in BAD_NUMBERS],
    ("grace_hours", "721"),
    ("grace_hours", ""),
    *[("grace_hours", value) for value in BAD_NUMBERS],
]


def assert_refused(response, before: dict[str, object]) -> None:
    assert 400 <= response.status_code < 500, response.content[:300]
    assert snapshot() == before
    body = response.content.decode()
    assert "<script>alert(1)" not in body
    assert "Traceback" not in body and "psycopg" not in body


@pytest.mark.parametrize(("field", "value"), CREATE_CASES, ids=lambda v: repr(v)[:30])
def test_hostile_create_input_is_refused_and_changes_nothing(as_owner, field, value):
    if value == "NOT_HELD":
        value = str(role_create(name="held-by-nobody", actor=SYSTEM).pk)
    before = snapshot()
    response = as_owner.post(CREATE, {**VALID_CREATE, field: value})
    assert_refused(response, before)
    if response.status_code == 400 and "text/html" in response["Content-Type"]:
        assert 'class="field-error"' in response.content.decode()


SCHEDULE_CASES = [
    ("rotate_every_days", "0"),
    ("rotate_every_days", "366"),
    *[("rotate_every_days", value) for value in BAD_NUMBERS],
    ("grace_hours", "721"),
    ("grace_hours", ""),
    ("grace_hours", "H" * 10_240),
    *[("grace_hours", value) for value in BAD_NUMBERS],
]


@pytest.mark.parametrize(("field", "value"), SCHEDULE_CASES, ids=lambda v: repr(v)[:30])
def test_hostile_schedule_input_is_refused_and_changes_nothing(as_owner, admin_key, field, value):
    before = snapshot()
    response = as_owner.post(
        url("schedule", admin_key.key), {"rotate_every_days": "7", "grace_hours": "1", field: value}
    )
    assert_refused(response, before)


@pytest.mark.parametrize("reason", ["R" * 201, "R" * 10_240, "re\x00ason"], ids=["201", "10kb", "nul"])
def test_hostile_revoke_input_is_refused_and_changes_nothing(as_owner, admin_key, reason):
    before = snapshot()
    assert_refused(as_owner.post(url("revoke", admin_key.key), {"reason": reason}), before)
    assert apikey_verify(presented=admin_key.secret) is not None


def test_a_revoke_reason_that_looks_like_code_is_kept_as_text(as_owner, admin_key):
    as_owner.post(url("revoke", admin_key.key), {"reason": XSS})
    event = AuditEvent.objects.get(action="apikey.revoked", target_id=admin_key.key.public_id)
    assert event.data["reason"] == XSS


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/keys/abc/rotate/",
        "/dashboard/keys/-1/revoke/",
        f"/dashboard/keys/{TOO_BIG}/revoke/",
        f"/dashboard/keys/{TOO_BIG}/schedule/",
        "/dashboard/keys/1%00/revoke/",
        "/dashboard/keys/%3Cscript%3E/revoke/",
    ],
)
def test_malformed_key_ids_are_not_found(as_owner, admin_key, path):
    before = snapshot()
    assert as_owner.get(path).status_code == 404
    assert as_owner.post(path, {"reason": "x"}).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("page", ["abc", "-1", "0", "99999", TOO_BIG, XSS, "P" * 10_240, "1\x00"])
def test_hostile_page_numbers_never_fail(as_owner, admin_key, page):
    response = as_owner.get(LIST, {"page": page})
    assert response.status_code in (200, 400)
    assert "<script>alert(1)" not in response.content.decode()
