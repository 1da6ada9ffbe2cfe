"""Revoking a remembered consent on the home page ("Applications you allowed"): the consent goes,
and with it every token the client holds for the user, refresh-token families included. The
tokens come from the real flow (authlib against the live server); the page is driven with
Django's test client, CSRF checks on."""

from __future__ import annotations

import pytest
import requests
from django.test import Client
from django.urls import reverse

import audit
from audit.models import AuditEvent
from idp.models import AccessToken, Consent, Grant, RefreshToken
from idp.oauth import consent
from tests.conftest import REDIRECT_URI
from tests.factories import make_client, make_user, relying_party, sign_in_at, signed_in_client, tokens_at
from tests.relying_party import RelyingParty

HOME = reverse("home")


def revoke_url(client_id: str) -> str:
    return f"/consents/{client_id}/revoke/"


@pytest.fixture
def browser(alice):
    """Alice's browser on the home page: signed in, CSRF enforced."""
    return signed_in_client(alice, enforce_csrf_checks=True)


def csrf(browser: Client) -> str:
    page = browser.get(HOME)
    assert page.status_code == 200
    return str(page.context["csrf_token"])


def post_revoke(browser: Client, client_id: str):
    return browser.post(revoke_url(client_id), {"csrfmiddlewaretoken": csrf(browser)})


def introspect(rp: RelyingParty, token: str) -> dict:
    reply = requests.post(
        rp.metadata["introspection_endpoint"], data={"token": token}, auth=(rp.client_id, rp.client_secret), timeout=10
    )
    return reply.json()


def state() -> dict[str, object]:
    """What a refused request must leave as it was."""
    return {
        "consents": list(Consent.objects.order_by("pk").values_list("pk", "scope")),
        "access": AccessToken.objects.count(),
        "refresh": list(RefreshToken.objects.order_by("pk").values_list("pk", "revoked")),
        "codes": Grant.objects.count(),
        "events": AuditEvent.objects.count(),
    }


@pytest.fixture
def allowed(rp, alice):
    """Alice allowed the client, remembered, and it holds a refreshed token pair (a family of two)."""
    tokens = tokens_at(rp, alice, consent="allow-remember")
    refreshed = dict(rp.session().refresh_token(rp.metadata["token_endpoint"], refresh_token=tokens["refresh_token"]))
    return refreshed


@pytest.fixture
def other_rp(live_server, signing_key):
    return relying_party(live_server.url, make_client(redirect_uris=[REDIRECT_URI], is_resource_server=True))


def test_the_home_page_lists_the_applications_allowed_with_a_revoke_button(browser, alice, issued_client, db):
    other = make_client(name="Not alices", is_resource_server=True).application
    consent.consent_grant(user_id=alice.pk, application=issued_client.application, scopes=["openid"], remember=True)
    consent.consent_grant(user_id=make_user().pk, application=other, scopes=["openid"], remember=True)

    page = browser.get(HOME).content.decode()

    assert "Applications you allowed" in page
    assert issued_client.application.name in page
    assert f'action="{revoke_url(issued_client.application.client_id)}"' in page
    assert "Revoke access" in page and "csrfmiddlewaretoken" in page
    assert "Not alices" not in page and other.client_id not in page, "only the user's own consents"


def test_the_home_page_says_so_when_nothing_is_allowed(browser):
    assert "No application remembers your permission." in browser.get(HOME).content.decode()


def test_revoking_access_ends_the_consent_and_every_token_of_the_client(
    rp, other_rp, alice, allowed, browser, live_server
):
    other = tokens_at(other_rp, alice)
    pending = sign_in_at(rp, alice, consent=None)  # a code not yet redeemed
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()

    reply = post_revoke(browser, rp.client_id)
    events = list(AuditEvent.objects.filter(id__gt=before).order_by("id"))

    assert reply.status_code == 302 and reply.headers["Location"] == HOME
    assert "no longer has access" in browser.get(HOME).content.decode()
    assert not Consent.objects.filter(user=alice, application__client_id=rp.client_id).exists()
    assert introspect(rp, allowed["access_token"]) == {"active": False}
    assert introspect(rp, allowed["refresh_token"]) == {"active": False}
    again = rp.token_request(grant_type="refresh_token", refresh_token=allowed["refresh_token"])
    assert again.json()["error"] == "invalid_grant"
    late = rp.token_request(
        grant_type="authorization_code",
        code=pending.params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=pending.code_verifier,
    )
    assert late.json()["error"] == "invalid_grant", "a code issued before the revocation buys nothing"
    assert introspect(other_rp, other["access_token"])["active"] is True, "another client keeps its tokens"

    assert [(e.action, e.actor_type, e.actor_id, e.target_type, e.target_id, e.client_id, e.data) for e in events] == [
        (
            "consent.revoked",
            "user",
            str(alice.pk),
            "client",
            rp.client_id,
            rp.client_id,
            {"scope": ["email", "offline_access", "openid", "profile"], "pending_codes": 1},
        ),
        (
            "token.revoked",
            "user",
            str(alice.pk),
            "user",
            str(alice.pk),
            rp.client_id,
            {"reason": "consent_revoked", "access_tokens": 1, "refresh_tokens": 1},
        ),
    ]

    # The next authorization asks again.
    url, _ = rp.session(scope="openid").create_authorization_url(rp.metadata["authorization_endpoint"])
    assert 'id="authorizationForm"' in rp.browser.get(url, timeout=10).text


def test_revoking_twice_changes_and_records_nothing_more(rp, alice, allowed, browser):
    assert post_revoke(browser, rp.client_id).status_code == 302
    after_first = state()

    assert post_revoke(browser, rp.client_id).status_code == 404, "a double click: nothing left to revoke"
    assert consent.consent_revoke(user=alice, client_id=rp.client_id, actor=audit.Actor.user(alice)) is False
    assert state() == after_first


def test_the_service_revokes_tokens_given_without_remembering(rp, alice):
    """A consent not remembered still let the client hold tokens; the service ends them too."""
    tokens = tokens_at(rp, alice, consent="allow")

    assert consent.consent_revoke(user=alice, client_id=rp.client_id, actor=audit.Actor.user(alice)) is True

    assert introspect(rp, tokens["refresh_token"]) == {"active": False}
    [event] = AuditEvent.objects.filter(action__in=["consent.revoked", "token.revoked"])
    assert (event.action, event.data["reason"]) == ("token.revoked", "consent_revoked")


@pytest.mark.parametrize(
    "client_id",
    [
        "unknown-client",
        "foreign",  # a client someone else allowed
        "tokens-only",  # a client alice has tokens with, but no remembered consent
        "x" * 100,
        "' OR '1'='1",
        "..%2F..%2Fadmin",
        "%00",
        "\u00e9t\u00e9",
        "a" * 101,
        "<script>alert(1)</script>",
    ],
)
def test_any_other_client_id_is_a_404_that_changes_nothing(browser, alice, issued_client, db, client_id):
    stranger = make_user()
    foreign = make_client().application
    consent.consent_grant(user_id=stranger.pk, application=foreign, scopes=["openid"], remember=True)
    consent.consent_grant(user_id=alice.pk, application=issued_client.application, scopes=["openid"], remember=False)
    resolved = {"foreign": foreign.client_id, "tokens-only": issued_client.application.client_id}.get(
        client_id, client_id
    )
    token = csrf(browser)
    before = state()

    reply = browser.post(f"/consents/{resolved}/revoke/", {"csrfmiddlewaretoken": token})

    assert reply.status_code == 404
    assert state() == before


def test_only_a_signed_in_post_with_its_csrf_token_revokes(alice, issued_client, db):
    consent.consent_grant(user_id=alice.pk, application=issued_client.application, scopes=["openid"], remember=True)
    url = revoke_url(issued_client.application.client_id)
    before = state()

    anonymous = Client(enforce_csrf_checks=True)
    token = str(anonymous.get(reverse("login")).context["csrf_token"])
    reply = anonymous.post(url, {"csrfmiddlewaretoken": token})
    assert reply.status_code == 302 and reply.headers["Location"].startswith(reverse("login"))
    signed_in = signed_in_client(alice, enforce_csrf_checks=True)
    before["events"] = AuditEvent.objects.count()  # signing in is an event of its own
    assert signed_in.get(url).status_code == 405
    assert signed_in.post(url).status_code == 403, "no CSRF token"
    assert state() == before
