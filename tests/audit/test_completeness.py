"""Completeness of the audit trail: one walk through every flow of the product, as its users drive
it (a browser and a relying party against the live server, a machine client, an administrator
with an API key and the admin), asserting after each step exactly the events it recorded, in
order, with their actor, target and client. At the end the chain verifies and no event holds any
secret handed out on the way."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urljoin

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from django.urls import reverse
from django.utils import timezone

import audit
from accounts.models import Role, User
from accounts.services import admin_role_ensure, role_create, role_grant
from apikeys.models import ApiKey
from apikeys.services import apikeys_end_due, apikeys_rotate_due
from audit import chain
from audit.models import AuditEvent
from tests.accounts.test_admin import Browser
from tests.factories import USER_PASSWORD, make_machine_client, make_staff, sign_in_at
from tests.redis_keys import raw_redis
from tests.relying_party import parse_form

SYSTEM = audit.Actor.system("tests")
WRONG_PASSWORD = "not the password at all"  # noqa: S105 (a test value: it must never be recorded)
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SHOWN_KEY = re.compile(r'<code id="apikey-secret"[^>]*data-public-id="([^"]+)"[^>]*>([^<]+)</code>')


@pytest.fixture(autouse=True)
def _no_earlier_failed_sign_ins():
    """Failed sign-in counters live in Redis and outlive test databases: start from none, so the
    brute-force watch sees only this walk's failures."""
    client = raw_redis()
    for key in client.scan_iter(match="*audit:failed-logins:*"):
        client.delete(key)


class Trail:
    """The events recorded since the last look, as (action, actor_type, actor_id, target_type,
    target_id, client_id)."""

    def __init__(self) -> None:
        self.seen = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def new(self) -> list[tuple[str, str, str, str, str, str]]:
        events = list(
            AuditEvent.objects.filter(id__gt=self.seen)
            .order_by("id")
            .values_list("id", "action", "actor_type", "actor_id", "target_type", "target_id", "client_id")
        )
        if events:
            self.seen = events[-1][0]
        return [event[1:] for event in events]


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page carries a CSRF token"
    return match.group(1)


def post_from(session: requests.Session, page_url: str, action: str, data: dict[str, str]) -> requests.Response:
    """Load a page, then post to one of its forms with the page's CSRF token, as a browser does."""
    page = session.get(page_url, allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.status_code
    fields = {"csrfmiddlewaretoken": csrf_token(page.text), **data}
    return session.post(
        urljoin(page_url, action), data=fields, headers={"Referer": page_url}, allow_redirects=False, timeout=10
    )


def shown_key(reply: requests.Response) -> tuple[str, str]:
    """The public id and raw key of the dashboard's show-once page."""
    assert reply.status_code == 200, reply.status_code
    match = SHOWN_KEY.search(reply.text)
    assert match, "the show-once page shows a key"
    return match.group(1), match.group(2).strip()


def test_every_flow_records_exactly_its_events(live_server, rp, alice, issued_client):
    base = live_server.url
    a, c = str(alice.pk), rp.client_id
    machine = make_machine_client()
    m = machine.application.client_id
    root = make_staff(username="root", superuser=True)
    r = str(root.pk)
    admin_role = admin_role_ensure(actor=SYSTEM)
    role_grant(role=admin_role, user=root, actor=SYSTEM)
    reports = role_create(name="reports", permissions=["reports.read"], actor=SYSTEM)
    secrets_seen: list[str] = [USER_PASSWORD, WRONG_PASSWORD, issued_client.client_secret, machine.client_secret]
    trail = Trail()

    # --- alice: a failed sign-in, then sign-in, consent (remembered) and the code ---------------
    login_page = rp.browser.get(f"{base}{reverse('login')}", timeout=10)
    _, fields = parse_form(login_page.text)
    failed = rp.browser.post(
        login_page.url, data={**fields, "username": alice.username, "password": WRONG_PASSWORD}, timeout=10
    )
    assert failed.status_code == 200, "the form again"
    assert trail.new() == [("login.failed", "anonymous", "", "user", a, "")]

    result = sign_in_at(rp, alice, consent="allow-remember")
    secrets_seen.append(result.params["code"])
    assert trail.new() == [
        ("login.succeeded", "user", a, "user", a, ""),
        ("consent.granted", "user", a, "client", c, c),
        ("code.issued", "user", a, "user", a, c),
    ]

    # --- the relying party: code for tokens, refresh, and a rotated refresh token replayed -------
    tokens = rp.exchange(result)
    secrets_seen += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert trail.new() == [("token.issued", "client", c, "user", a, c)]

    refreshed = dict(rp.session().refresh_token(rp.metadata["token_endpoint"], refresh_token=tokens["refresh_token"]))
    secrets_seen += [refreshed["access_token"], refreshed["refresh_token"], refreshed["id_token"]]
    assert trail.new() == [("token.refreshed", "client", c, "user", a, c)]

    replayed = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert replayed.json()["error"] == "invalid_grant"
    assert trail.new() == [
        ("token.reuse_detected", "client", c, "user", a, c),
        ("token.revoked", "client", c, "user", a, c),  # the family: the refreshed pair too
    ]
    assert rp.token_request(grant_type="refresh_token", refresh_token=refreshed["refresh_token"]).status_code == 400
    assert trail.new() == [("token.reuse_detected", "client", c, "user", a, c)], (
        "the family's newest token, swept with it: a replay again, with nothing left to revoke"
    )

    # --- remembered consent: no consent page, a code and tokens; RFC 7009 revocation -------------
    result = sign_in_at(rp, alice, consent=None)
    secrets_seen.append(result.params["code"])
    tokens = rp.exchange(result)
    secrets_seen += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert trail.new() == [("code.issued", "user", a, "user", a, c), ("token.issued", "client", c, "user", a, c)]

    revocation = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    auth = (rp.client_id, rp.client_secret)
    assert requests.post(rp.metadata["revocation_endpoint"], data=revocation, auth=auth, timeout=10).status_code == 200
    assert trail.new() == [("token.revoked", "client", c, "user", a, c)]
    assert requests.post(rp.metadata["revocation_endpoint"], data=revocation, auth=auth, timeout=10).status_code == 200
    assert trail.new() == [], "revoking a revoked token records nothing"

    # --- an authorization code presented twice: what its first use bought is revoked ------------
    result = sign_in_at(rp, alice, consent=None)
    secrets_seen.append(result.params["code"])
    tokens = rp.exchange(result)
    secrets_seen += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert trail.new() == [("code.issued", "user", a, "user", a, c), ("token.issued", "client", c, "user", a, c)]
    replayed = rp.token_request(
        grant_type="authorization_code",
        code=result.params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=result.code_verifier,
    )
    assert replayed.json()["error"] == "invalid_grant"
    assert trail.new() == [
        ("token.reuse_detected", "client", c, "user", a, c),
        ("token.revoked", "client", c, "user", a, c),
    ]

    # --- a machine client: client credentials --------------------------------------------------
    session = OAuth2Session(m, machine.client_secret, scope="profile")
    machine_token = dict(session.fetch_token(rp.metadata["token_endpoint"], grant_type="client_credentials"))
    secrets_seen.append(machine_token["access_token"])
    assert trail.new() == [("token.issued", "client", m, "client", m, m)]

    # --- RP-initiated logout: the session ends and alice's tokens with it ------------------------
    result = sign_in_at(rp, alice, consent=None)
    secrets_seen.append(result.params["code"])
    tokens = rp.exchange(result)
    secrets_seen += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert trail.new() == [("code.issued", "user", a, "user", a, c), ("token.issued", "client", c, "user", a, c)]

    confirm = rp.browser.get(rp.metadata["end_session_endpoint"], allow_redirects=False, timeout=10)
    assert confirm.status_code == 200
    assert trail.new() == [], "the confirmation page changes nothing"
    _, fields = parse_form(confirm.text)
    signed_out = rp.browser.post(confirm.url, data={**fields, "allow": "on"}, allow_redirects=False, timeout=10)
    assert signed_out.status_code == 200, "our signed-out page: no hint, no redirect"
    assert trail.new() == [
        ("token.revoked", "user", a, "user", a, c),
        ("session.ended", "user", a, "user", a, ""),
        ("logout", "user", a, "user", a, ""),
    ]
    assert rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 400
    assert trail.new() == [("token.reuse_detected", "client", c, "user", a, c)], (
        "a refresh token revoked at logout, presented again: detected, nothing left to revoke"
    )

    # --- consent revoked on the home page -------------------------------------------------------
    result = sign_in_at(rp, alice, consent=None)
    secrets_seen.append(result.params["code"])
    tokens = rp.exchange(result)
    secrets_seen += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert trail.new() == [
        ("login.succeeded", "user", a, "user", a, ""),
        ("code.issued", "user", a, "user", a, c),
        ("token.issued", "client", c, "user", a, c),
    ]
    revoked = post_from(rp.browser, f"{base}/", reverse("consent-revoke", args=[c]), {})
    assert revoked.status_code == 302 and revoked.headers["Location"] == reverse("home")
    assert trail.new() == [
        ("consent.revoked", "user", a, "client", c, c),
        ("token.revoked", "user", a, "user", a, c),
    ]

    # --- root: signs in to the admin; API keys on the dashboard and the scheduler ---------------
    admin = Browser(base)
    signed_in = admin.sign_in_to_admin(User.objects.get(username="root"))
    assert signed_in.status_code == 302
    assert trail.new() == [("login.succeeded", "user", r, "user", r, "")]

    dashboard = f"{base}{reverse('apikeys:list')}"
    create = f"{base}{reverse('apikeys:create')}"
    k1, secret = shown_key(
        post_from(
            admin.session,
            create,
            create,
            {"name": "deploy", "scopes": "idp.manage", "roles": str(admin_role.pk), "grace_hours": "1"},
        )
    )
    secrets_seen.append(secret)
    assert trail.new() == [("apikey.created", "user", r, "apikey", k1, "")]

    first = ApiKey.objects.get(public_id=k1)
    k2, secret = shown_key(post_from(admin.session, dashboard, reverse("apikeys:rotate", args=[first.pk]), {}))
    secrets_seen.append(secret)
    assert trail.new() == [("apikey.rotated", "user", r, "apikey", k1, "")]

    second = ApiKey.objects.get(public_id=k2)
    schedule = f"{base}{reverse('apikeys:schedule', args=[second.pk])}"
    scheduled = post_from(admin.session, schedule, schedule, {"rotate_every_days": "1", "grace_hours": "1"})
    assert scheduled.status_code == 302
    assert trail.new() == [("apikey.scheduled", "user", r, "apikey", k2, "")]

    assert apikeys_rotate_due(now=timezone.now() + timedelta(days=1, minutes=1)) == 1
    third = ApiKey.objects.get(rotated_from=second)
    k3 = third.public_id
    assert trail.new() == [("apikey.rotated", "system", "scheduler", "apikey", k2, "")]

    revealed, secret = shown_key(post_from(admin.session, dashboard, reverse("apikeys:reveal", args=[third.pk]), {}))
    assert revealed == k3
    secrets_seen.append(secret)
    assert trail.new() == [("apikey.revealed", "user", r, "apikey", k3, "")]

    # --- every role change, through the management API with that key ----------------------------
    api = requests.Session()
    api.headers["X-API-Key"] = secret
    role = api.post(f"{base}/api/v1/roles/", json={"name": "auditors", "permissions": ["idp.users.read"]}, timeout=10)
    assert role.status_code == 201, role.text
    role_id = str(role.json()["id"])
    assert trail.new() == [("role.created", "apikey", k3, "accounts.role", role_id, "")]

    granted = api.post(f"{base}/api/v1/role-assignments/", json={"role": int(role_id), "user": alice.pk}, timeout=10)
    assert granted.status_code == 201, granted.text
    assert trail.new() == [("role.granted", "apikey", k3, "user", a, "")]

    changed = api.patch(f"{base}/api/v1/roles/{role_id}/", json={"description": "Read users"}, timeout=10)
    assert changed.status_code == 200, changed.text
    assert trail.new() == [("role.updated", "apikey", k3, "accounts.role", role_id, "")]

    taken = api.delete(f"{base}/api/v1/role-assignments/{granted.json()['id']}/", timeout=10)
    assert taken.status_code == 204
    assert trail.new() == [("role.revoked", "apikey", k3, "user", a, "")]

    assert api.delete(f"{base}/api/v1/roles/{role_id}/", timeout=10).status_code == 204
    assert trail.new() == [("role.deleted", "apikey", k3, "accounts.role", role_id, "")]

    # --- the key revoked on the dashboard; the sweep ends the rotated-out ones -------------------
    revoke = f"{base}{reverse('apikeys:revoke', args=[third.pk])}"
    assert post_from(admin.session, revoke, revoke, {"reason": "done"}).status_code == 302
    assert trail.new() == [("apikey.revoked", "user", r, "apikey", k3, "")]

    assert apikeys_end_due(now=timezone.now() + timedelta(days=3)) == 2
    assert trail.new() == [
        ("apikey.expired", "system", "scheduler", "apikey", k1, ""),
        ("apikey.expired", "system", "scheduler", "apikey", k2, ""),
    ]

    # --- admin edits: a role, and a user ---------------------------------------------------------
    edited = admin.submit(
        reverse("admin:accounts_role_change", args=[reports.pk]),
        "role_form",
        {"description": "Monthly reports", "_save": ""},
    )
    assert edited.status_code == 302
    assert trail.new() == [
        ("role.updated", "user", r, "accounts.role", str(reports.pk), ""),
        ("admin.changed", "user", r, "accounts.role", str(reports.pk), ""),
    ]

    edited = admin.submit(
        reverse("admin:accounts_user_change", args=[alice.pk]), "user_form", {"first_name": "Alicia", "_save": ""}
    )
    assert edited.status_code == 302
    assert trail.new() == [("admin.changed", "user", r, "accounts.user", a, "")]
    assert Role.objects.get(pk=reports.pk).description == "Monthly reports"

    # --- the whole trail: the chain holds, and no secret is anywhere in it -----------------------
    audit.seal()
    events = [event.as_chain_event() for event in AuditEvent.objects.order_by("position")]
    *_, last = chain.walk(events)
    assert last.broken is None and last.count == len(events)
    recorded = json.dumps(events)
    leaked = [secret for secret in secrets_seen if secret and secret in recorded]
    assert leaked == [], "no code, token, client secret, API key or password in any event"
    assert alice.username not in json.dumps([e for e in events if e["action"] == "login.failed"])
