"""The sessions page's forms under attack (another user's session, forged or missing CSRF, wrong
methods, oversized and odd ids: 4xx, nothing ended), RP-initiated logout continuing to the
client's post_logout_redirect_uri through the front-channel iframes, and discovery."""

from __future__ import annotations

import re

import pytest
import requests

from audit.models import AuditEvent
from idp.models import BrowserSession
from tests.conftest import POST_LOGOUT_REDIRECT_URI, REDIRECT_URI
from tests.factories import make_client, make_user, relying_party, signed_in_client, tokens_at
from tests.hostile import VALUES
from tests.sessions.receiver import Receiver


def test_hostile_session_ids_on_the_sessions_page_end_nothing(db):
    alice, bob = make_user(), make_user()
    browser = signed_in_client(alice, second_factor=False, raise_request_exception=False)
    signed_in_client(bob, second_factor=False)
    (bobs,) = BrowserSession.objects.filter(user=bob)
    before = set(BrowserSession.objects.values_list("pk", flat=True))

    # Someone else's session: the same 404 as a session that does not exist.
    assert browser.post(f"/dashboard/sessions/{bobs.public_id}/end/").status_code == 404
    assert browser.post(f"/dashboard/sessions/{bobs.session_key}/end/").status_code == 404
    assert browser.post(f"/dashboard/sessions/{bobs.pk}/end/").status_code == 404
    for name, value in VALUES.items():
        if name in ("empty", "traversal"):
            continue  # another route altogether
        reply = browser.post(f"/dashboard/sessions/{requests.utils.quote(value, safe='')}/end/")
        assert reply.status_code in (400, 404), (name, reply.status_code)
    # A GET changes nothing: the page is POST only.
    assert browser.get(f"/dashboard/sessions/{bobs.public_id}/end/").status_code == 405
    assert browser.get("/dashboard/sessions/end-all/").status_code == 405
    assert set(BrowserSession.objects.values_list("pk", flat=True)) == before
    assert not AuditEvent.objects.filter(action="session.ended").exists()


def test_hostile_posts_without_csrf_are_refused(db):
    alice = make_user()
    browser = signed_in_client(alice, second_factor=False, enforce_csrf_checks=True)
    (own,) = BrowserSession.objects.filter(user=alice)
    assert browser.post(f"/dashboard/sessions/{own.public_id}/end/").status_code == 403
    assert browser.post("/dashboard/sessions/end-all/", {"csrfmiddlewaretoken": "forged" * 6}).status_code == 403
    assert BrowserSession.objects.filter(user=alice).count() == 1


def test_signed_out_visitors_are_sent_to_sign_in(client, db):
    reply = client.get("/dashboard/sessions/")
    assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/")
    assert client.post("/dashboard/sessions/end-all/").status_code in (302, 403)


def test_rp_initiated_logout_continues_to_the_client_after_its_front_channel_iframe(
    live_server, signing_key, alice, receiver: Receiver
):
    issued = make_client(
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI],
        frontchannel_logout_uri=receiver.uri("/fc"),
        frontchannel_logout_session_required=True,
    )
    rp = relying_party(live_server.url, issued)
    tokens = tokens_at(rp, alice)
    sid = rp.verify_id_token(tokens["id_token"], nonce=None)["sid"]
    reply = rp.browser.get(
        rp.metadata["end_session_endpoint"],
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI,
            "state": "s1",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 200, "a page first, for the iframes; then on to the client"
    refresh = re.search(r'<meta http-equiv="refresh" content="(\d+); url=([^"]+)">', reply.text)
    assert refresh is not None
    assert refresh.group(2).replace("&amp;", "&") == f"{POST_LOGOUT_REDIRECT_URI}?state=s1"
    iframe = re.search(r'<iframe src="([^"]+)"', reply.text)
    assert iframe is not None
    framed = iframe.group(1).replace("&amp;", "&")
    assert framed.startswith(receiver.uri("/fc?")) and f"sid={sid}" in framed
    csp = reply.headers["Content-Security-Policy"]
    assert f"frame-src {receiver.origin}" in csp and "script-src 'self'" in csp
    assert "no-store" in reply.headers["Cache-Control"]
    assert not BrowserSession.objects.filter(user=alice).exists()


def test_rp_initiated_logout_without_front_channel_clients_redirects_at_once(rp, alice):
    tokens = tokens_at(rp, alice)
    reply = rp.browser.get(
        rp.metadata["end_session_endpoint"],
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 302 and reply.headers["Location"] == POST_LOGOUT_REDIRECT_URI


def test_the_signed_out_page_frames_nothing_by_default(live_server, alice):
    from tests.factories import signed_in_session

    browser = signed_in_session(live_server.url, alice)
    page = browser.get(f"{live_server.url}/dashboard/sessions/", timeout=10)
    reply = browser.post(
        f"{live_server.url}/dashboard/sessions/end-all/",
        data={"csrfmiddlewaretoken": browser.cookies["idp_csrf"]},
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 200 and "You are signed out" in reply.text
    assert "<iframe" not in reply.text and "frame-src" not in reply.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "name",
    [
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
    ],
)
def test_discovery_advertises_single_logout(rp, name):
    assert rp.metadata[name] is True
