"""Sessions as rows: the table never holds a usable session key, each row knows its user, sid,
device, address and clients, "last active" is written about once a minute, and every way a
session ends (the user, sign-out, deactivation, a factor reset) goes through one service that
revokes its tokens and records it."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone

import audit
from accounts.selectors import Caller
from accounts.services import user_deactivate
from audit.models import AuditEvent
from idp.mfa import factors
from idp.models import BrowserSession
from idp.sessions.services import user_sessions_end
from tests.factories import (
    USER_PASSWORD,
    make_user,
    relying_party,
    signed_in_session,
    tokens_at,
    totp_device,
)
from tests.relying_party import RelyingParty, parse_form

COOKIE = settings.SESSION_COOKIE_NAME


def userinfo_answers(rp: RelyingParty, tokens: dict) -> int:
    reply = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    return reply.status_code


def dashboard_status(browser: requests.Session, base_url: str) -> int:
    return browser.get(f"{base_url}/dashboard/sessions/", allow_redirects=False, timeout=10).status_code


def test_the_table_holds_the_digest_of_the_session_key_never_the_key(live_server, alice):
    browser = signed_in_session(live_server.url, alice)
    key = browser.cookies[COOKIE]
    row = BrowserSession.objects.get(user=alice)
    assert row.session_key == hashlib.sha256(key.encode()).hexdigest()
    assert row.public_id != key and key not in row.public_id
    with connection.cursor() as cursor:
        cursor.execute("SELECT t::text FROM idp_browsersession t")
        dump = " ".join(text for (text,) in cursor.fetchall())
    assert key not in dump, "a dump of the table signs nobody in"
    # The digest itself is not a key: presented as a cookie, it opens nothing.
    thief = requests.Session()
    thief.cookies.set(COOKIE, row.session_key)
    assert dashboard_status(thief, live_server.url) == 302
    assert dashboard_status(browser, live_server.url) == 200


def test_a_row_knows_its_user_device_address_sid_and_clients(rp, alice):
    tokens = tokens_at(rp, alice)
    row = BrowserSession.objects.get(user=alice)
    assert row.user_agent.startswith("python-requests/")
    assert row.ip_address == "127.0.0.1"
    assert row.sid == rp.verify_id_token(tokens["id_token"], nonce=None)["sid"]
    assert row.client_ids == [rp.client_id]
    assert row.issuer == rp.metadata["issuer"]


def test_last_active_is_written_about_once_a_minute_not_on_every_request(live_server, alice):
    browser = signed_in_session(live_server.url, alice)
    row = BrowserSession.objects.get(user=alice)
    assert dashboard_status(browser, live_server.url) == 200
    assert BrowserSession.objects.get(pk=row.pk).last_active_at == row.last_active_at, "read, not written"
    earlier = timezone.now() - timedelta(minutes=5)
    BrowserSession.objects.filter(pk=row.pk).update(last_active_at=earlier)
    assert dashboard_status(browser, live_server.url) == 200
    touched = BrowserSession.objects.get(pk=row.pk).last_active_at
    assert touched > earlier + timedelta(minutes=4)
    assert dashboard_status(browser, live_server.url) == 200
    assert BrowserSession.objects.get(pk=row.pk).last_active_at == touched


def test_ending_all_but_one_session_signs_the_others_out_and_revokes_only_their_tokens(live_server, signing_key, alice):
    from tests.factories import make_client

    issued = make_client()
    kept_rp, ended_rp = relying_party(live_server.url, issued), relying_party(live_server.url, issued)
    kept_tokens, ended_tokens = tokens_at(kept_rp, alice), tokens_at(ended_rp, alice)
    kept_key = kept_rp.browser.cookies[COOKIE]

    assert (
        user_sessions_end(
            user_id=alice.pk, actor=audit.Actor.user(alice), reason="password_changed", keep_session_key=kept_key
        )
        == 1
    )
    assert userinfo_answers(ended_rp, ended_tokens) == 401
    assert userinfo_answers(kept_rp, kept_tokens) == 200
    assert dashboard_status(ended_rp.browser, live_server.url) == 302, "signed out at its next request"
    assert dashboard_status(kept_rp.browser, live_server.url) == 200
    ended = AuditEvent.objects.filter(action="session.ended", target_id=str(alice.pk))
    assert [event.data["reason"] for event in ended] == ["password_changed"]
    assert (
        user_sessions_end(user_id=alice.pk, actor=audit.Actor.user(alice), reason="again", keep_session_key=kept_key)
        == 0
    )


def test_signing_out_goes_through_the_same_path(live_server, alice):
    browser = signed_in_session(live_server.url, alice)
    page = browser.get(f"{live_server.url}/dashboard/sessions/", timeout=10)
    reply = browser.post(
        f"{live_server.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": browser.cookies["idp_csrf"]},
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 302
    assert not BrowserSession.objects.filter(user=alice).exists()
    assert AuditEvent.objects.filter(action="session.ended", target_id=str(alice.pk), data__reason="logout").exists()


def test_deactivating_a_user_ends_their_sessions(rp, alice):
    tokens = tokens_at(rp, alice)
    user_deactivate(user_id=alice.pk, actor=audit.Actor.system("tests"), caller=None)
    assert not BrowserSession.objects.filter(user=alice).exists()
    assert dashboard_status(rp.browser, rp.base_url) == 302
    assert userinfo_answers(rp, tokens) == 401
    assert AuditEvent.objects.filter(action="session.ended", data__reason="user_deactivated").exists()


def test_unticking_active_in_admin_ends_their_sessions(live_server, admin_client):
    bob = make_user()
    signed_in_session(live_server.url, bob)
    bob.is_active = False
    bob.save()
    assert not BrowserSession.objects.filter(user=bob).exists()


def test_resetting_a_users_factors_ends_their_sessions(live_server, db):
    bob = make_user()
    totp_device(bob)
    signed_in_session(live_server.url, bob)
    assert BrowserSession.objects.filter(user=bob).exists()
    factors.factors_reset(user=bob, actor=audit.Actor.system("tests"), caller=Caller.operator(audit.Actor.system("t")))
    assert not BrowserSession.objects.filter(user=bob).exists()
    assert AuditEvent.objects.filter(action="session.ended", data__reason="mfa_reset").exists()


@pytest.mark.parametrize("ua", ["", "x" * 5000, "Mozilla/5.0 \x00 (nul) <script>"])
def test_hostile_user_agents_are_kept_truncated_and_shown_escaped(live_server, alice, ua):
    browser = requests.Session()
    browser.headers["User-Agent"] = ua
    page = browser.get(f"{live_server.url}/accounts/login/", timeout=10)
    _, fields = parse_form(page.text)
    fields.update(username=alice.username, password=USER_PASSWORD)
    signed_in = browser.post(page.url, data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 302
    row = BrowserSession.objects.get(user=alice)
    assert len(row.user_agent) <= 300 and "\x00" not in row.user_agent
    listing = browser.get(f"{live_server.url}/dashboard/sessions/", timeout=10)
    assert listing.status_code == 200
    assert "<script>" not in listing.text
