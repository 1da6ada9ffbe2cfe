"""Hostile upstreams and hostile callers of the brokered sign-in, through Django's test client,
against a fake upstream (fake_upstream: discovery, JWKS and token endpoint that answer what each
test says). Our code runs for real: authlib validates what the fake sends. Every refusal is a
clear 4xx page, recorded as upstream.signin_failed, and signs nobody in."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from accounts.models import ADMIN_ROLE, Role, RoleAssignment, User
from accounts.services import admin_role_ensure, role_create, role_grant, user_deactivate
from audit.models import AuditEvent
from idp.federation.client import secret_encrypt
from idp.mfa.signin import AUTH_KEY
from idp.models import UpstreamLink, UpstreamProvider, UpstreamRoleMapping
from tests.factories import (
    SYSTEM,
    make_user,
    post_sign_in_form,
    second_factor_for,
    session_authenticated,
    totp_device,
)
from tests.federation.fake_upstream import CLIENT_ID, CLIENT_SECRET, OTHER_KEY, FakeUpstream, fake_upstream
from tests.hostile import VALUES

pytestmark = pytest.mark.django_db

SLUG = "fake"
GROUP = "engineers"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with fake_upstream() as upstream:
        yield upstream


@pytest.fixture
def engineer() -> Role:
    return role_create(name="engineer", permissions=[], actor=SYSTEM)


@pytest.fixture
def provider(fake: FakeUpstream, engineer: Role) -> UpstreamProvider:
    provider = UpstreamProvider.objects.create(
        slug=SLUG,
        display_name="Fake",
        issuer=fake.url,
        client_id=CLIENT_ID,
        client_secret_encrypted=secret_encrypt(CLIENT_SECRET),
        scopes="openid email profile",
        is_enabled=True,
        trust_email=True,
        role_claim="groups",
    )
    UpstreamRoleMapping.objects.create(provider=provider, value=GROUP, role=engineer)
    return provider


def _start(client: Client, next_to: str = "/dashboard/") -> dict[str, str]:
    reply = client.get(f"/accounts/upstream/{SLUG}/", {"next": next_to})
    assert reply.status_code == 302, reply.content[:300]
    return {key: values[0] for key, values in parse_qs(urlsplit(reply["Location"]).query).items()}


def _callback(client: Client, **params: str):
    return client.get(f"/accounts/upstream/{SLUG}/callback/", params)


def _refusals() -> list[str]:
    return [event.data["reason"] for event in AuditEvent.objects.filter(action="upstream.signin_failed")]


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _sign_in(client: Client, fake: FakeUpstream, **claims):
    """One sign-in at the fake upstream, whose ID token carries `claims` over honest defaults."""
    asked = _start(client)
    fake.token_reply = lambda form: fake.tokens(fake.id_token(nonce=asked["nonce"], **claims))
    return _callback(client, state=asked["state"], code="the-code")


# --- The control: an honest upstream signs in, with PKCE S256 and the client's secret ---------------


def test_an_honest_upstream_signs_in_with_pkce_and_a_safe_next(client, provider, fake):
    asked = _start(client, next_to="https://evil.example/")
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
    assert asked["client_id"] == CLIENT_ID and asked["scope"] == "openid email profile"
    fake.token_reply = lambda form: fake.tokens(
        fake.id_token(nonce=asked["nonce"], email="ann@fake.example", email_verified=True, groups=[GROUP])
    )
    reply = _callback(client, state=asked["state"], code="the-code")
    assert reply.status_code == 302
    assert reply["Location"] == "/"  # LOGIN_REDIRECT_URL, not the foreign next
    [posted] = fake.token_requests
    verifier = posted["code_verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == asked["code_challenge"]
    assert posted["authorization"] == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    user = User.objects.get(upstream_links__subject="fake-sub-1")
    assert (user.username, user.email, user.email_verified) == ("ann", "ann@fake.example", True)
    assert client.session[AUTH_KEY]["amr"] == ["fed"]
    assert _signed_in(client) and _refusals() == []


# --- ID tokens authlib must refuse ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "answer"),
    [
        ("another_audience", lambda fake, nonce: fake.tokens(fake.id_token(nonce=nonce, aud="another-client"))),
        ("another_issuer", lambda fake, nonce: fake.tokens(fake.id_token(nonce=nonce, iss="https://evil.example"))),
        ("expired", lambda fake, nonce: fake.tokens(fake.id_token(nonce=nonce, iat=1_000_000, exp=1_000_300))),
        ("wrong_nonce", lambda fake, nonce: fake.tokens(fake.id_token(nonce="not-the-one"))),
        ("no_nonce", lambda fake, nonce: fake.tokens(fake.id_token(nonce=None))),
        ("no_sub", lambda fake, nonce: fake.tokens(fake.id_token(nonce=nonce, sub=None))),
        ("unpublished_key", lambda fake, nonce: fake.tokens(fake.id_token(nonce=nonce, key=OTHER_KEY))),
        (
            "alg_none",
            lambda fake, nonce: fake.tokens(
                ".".join(
                    base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                    for part in ({"alg": "none"}, {"iss": fake.url, "aud": CLIENT_ID, "sub": "x", "nonce": nonce})
                )
                + "."
            ),
        ),
        ("not_a_jwt", lambda fake, nonce: fake.tokens("garbage")),
        ("no_id_token", lambda fake, nonce: fake.tokens(None)),
        ("html_answer", lambda fake, nonce: (200, "text/html", b"<html>maintenance</html>")),
        ("server_error", lambda fake, nonce: (500, "text/plain", b"boom")),
        ("grant_refused", lambda fake, nonce: (400, "application/json", b'{"error": "invalid_grant"}')),
    ],
)
def test_hostile_id_tokens_and_token_answers_sign_nobody_in(client, provider, fake, case, answer):
    asked = _start(client)
    fake.token_reply = lambda form: answer(fake, asked["nonce"])
    reply = _callback(client, state=asked["state"], code="the-code")
    assert reply.status_code == 400, case
    assert b"Back to sign in" in reply.content and b"Traceback" not in reply.content
    assert not _signed_in(client)
    assert not User.objects.exists() and not UpstreamLink.objects.exists()
    assert _refusals() in (["token_rejected"], ["id_token_missing"], ["bad_subject"])


def test_a_callback_works_once_and_only_in_the_browser_that_started(client, provider, fake):
    asked = _start(client)
    fake.token_reply = lambda form: fake.tokens(fake.id_token(nonce=asked["nonce"]))
    elsewhere = Client()  # the attacker's browser, holding the victim's callback (or the reverse)
    assert _callback(elsewhere, state=asked["state"], code="the-code").status_code == 400
    assert _callback(client, state=asked["state"], code="the-code").status_code == 302
    client.logout()
    assert _callback(client, state=asked["state"], code="the-code").status_code == 400  # replayed
    assert len(fake.token_requests) == 1
    assert _refusals() == ["state_mismatch", "state_mismatch"]


# --- Hostile callers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["state", "code", "error"])
@pytest.mark.parametrize("kind", sorted(VALUES))
def test_hostile_callback_parameters_are_refused_cleanly(client, provider, fake, name, kind):
    asked = _start(client)
    params = {"state": asked["state"], "code": "the-code"} | {name: VALUES[kind]}
    # The upstream judges codes: the fake knows one.
    fake.token_reply = lambda form: (
        fake.tokens(fake.id_token(nonce=asked["nonce"]))
        if form.get("code") == "the-code"
        else (400, "application/json", b'{"error": "invalid_grant"}')
    )
    reply = _callback(client, **params)
    if name == "error" and kind == "empty":
        assert reply.status_code == 302  # no error after all: the honest callback
        return
    assert 400 <= reply.status_code < 500, (name, kind, reply.status_code)
    assert b"Traceback" not in reply.content
    assert not _signed_in(client)


def test_hostile_callbacks_for_an_unknown_or_disabled_upstream_or_an_error(client, provider, fake):
    assert _callback(client, state="s", code="c").status_code == 400  # a forged state
    assert client.get("/accounts/upstream/nobody/callback/", {"state": "s", "code": "c"}).status_code == 404
    assert client.get("/accounts/upstream/nobody/").status_code == 404
    assert client.get("/accounts/upstream/" + "x" * 5000 + "/").status_code == 404
    asked = _start(client)
    UpstreamProvider.objects.filter(pk=provider.pk).update(is_enabled=False)
    assert _callback(client, state=asked["state"], code="c").status_code == 404
    assert client.get(f"/accounts/upstream/{SLUG}/").status_code == 404
    UpstreamProvider.objects.filter(pk=provider.pk).update(is_enabled=True)
    denied = _callback(client, state=asked["state"], error="access_denied")
    assert denied.status_code == 400 and b"cancelled or refused" in denied.content
    assert _callback(client, state=asked["state"], code="c" * 3000).status_code == 400
    assert _refusals() == [
        "state_mismatch",
        "unknown_upstream",
        "unknown_upstream",
        "unknown_upstream",
        "unknown_upstream",
        "unknown_upstream",
        "upstream_access_denied",
        "oversized_parameter",
    ]
    assert fake.token_requests == [] and not _signed_in(client)


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_hostile_methods_on_start_and_callback(client, provider, method):
    for path in (f"/accounts/upstream/{SLUG}/", f"/accounts/upstream/{SLUG}/callback/"):
        assert getattr(client, method)(path).status_code in (403, 405)


@pytest.mark.parametrize(
    ("discovery", "reason"),
    [
        (lambda url: (200, "text/html", b"<html>not json</html>"), "upstream_unavailable"),
        (lambda url: (503, "text/plain", b"down"), "upstream_unavailable"),
        (lambda url: (200, "application/json", b"[1, 2]"), "upstream_unavailable"),
        (
            lambda url: (200, "application/json", json.dumps({"issuer": "https://evil.example"}).encode()),
            "issuer_mismatch",
        ),
    ],
)
def test_hostile_upstream_discovery_stops_the_start(client, provider, fake, discovery, reason):
    fake.discovery = discovery
    reply = client.get(f"/accounts/upstream/{SLUG}/")
    assert reply.status_code == 400 and b"Back to sign in" in reply.content
    assert _refusals() == [reason]


def test_an_upstream_that_is_down_gives_a_page(client, provider):
    UpstreamProvider.objects.filter(pk=provider.pk).update(issuer="http://127.0.0.1:9")  # discard: nothing listens
    reply = client.get(f"/accounts/upstream/{SLUG}/")
    assert reply.status_code == 400 and b"cannot be reached" in reply.content
    assert _refusals() == ["upstream_unavailable"]


def test_a_locked_out_address_cannot_start_or_finish(client, provider, fake, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        post_sign_in_form("nobody-here", "wrong", ip="127.0.0.1", client=client)
    assert client.get(f"/accounts/upstream/{SLUG}/").status_code == 429
    assert _callback(client, state="s", code="c").status_code == 429


# --- Accounts --------------------------------------------------------------------------------------


def test_an_unverified_local_address_is_never_linked_nor_duplicated(client, provider, fake):
    local = make_user(username="ann-local", email="ann@fake.example")  # email_verified False
    reply = _sign_in(client, fake, email="ann@fake.example", email_verified=True)
    assert reply.status_code == 403 and b"not verified" in reply.content
    assert list(User.objects.all()) == [local] and not UpstreamLink.objects.exists()
    assert not _signed_in(client) and _refusals() == ["email_taken_unverified"]


def test_the_link_page_links_nothing_without_the_local_password(client, provider, fake):
    local = make_user(username="ann-local", email="ann@fake.example")
    User.objects.filter(pk=local.pk).update(email_verified=True)
    assert client.post("/accounts/link-upstream/").status_code == 400  # nothing pending
    reply = _sign_in(client, fake, email="ANN@fake.example")
    assert reply.status_code == 302 and reply["Location"] == "/accounts/link-upstream/"
    assert not _signed_in(client)
    assert client.post("/accounts/link-upstream/").status_code == 403  # not proved
    other = make_user(username="mallory")
    client.force_login(other)  # signed in, as somebody else
    assert client.post("/accounts/link-upstream/").status_code == 403
    assert not UpstreamLink.objects.exists()
    assert _refusals() == ["nothing_to_link", "link_not_proved", "link_not_proved"]


def test_a_deactivated_user_cannot_sign_in_through_the_upstream(client, provider, fake):
    assert _sign_in(client, fake).status_code == 302
    user = User.objects.get()
    user_deactivate(user_id=user.pk, actor=SYSTEM)
    other = Client()
    reply = _sign_in(other, fake)
    assert reply.status_code == 403 and b"switched off" in reply.content
    assert not _signed_in(other) and _refusals() == ["user_inactive"]


def test_a_user_with_a_second_factor_is_asked_for_it_after_the_upstream(client, provider, fake):
    assert _sign_in(client, fake).status_code == 302
    user = User.objects.get()
    totp_device(user)
    again = Client()
    reply = _sign_in(again, fake)
    assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/verify/")
    assert not _signed_in(again)  # one factor so far: fed
    verified = again.post(reply["Location"], {"method": "totp", "code": second_factor_for(user)()})
    assert verified.status_code == 302 and _signed_in(again)
    assert again.session[AUTH_KEY]["amr"] == ["fed", "otp", "mfa"]


# --- Roles ---------------------------------------------------------------------------------------


def _roles(user: User) -> list[str]:
    return sorted(RoleAssignment.objects.filter(user=user).values_list("role__name", flat=True))


def test_mapped_roles_follow_the_claim_and_hand_granted_roles_stay(client, provider, fake, engineer):
    assert _sign_in(client, fake, groups=[GROUP, "unmapped"]).status_code == 302
    user = User.objects.get()
    assert _roles(user) == ["engineer"]
    assert _sign_in(Client(), fake, groups=[]).status_code == 302
    assert _roles(user) == []
    [revoked] = AuditEvent.objects.filter(action="role.revoked", target_id=str(user.pk))
    assert (revoked.actor_id, revoked.data["role"]) == (f"upstream:{SLUG}", "engineer")
    # Granted by hand: the mapping neither counts it as its own nor takes it back.
    role_grant(role=engineer, user=user, actor=SYSTEM)
    assert _sign_in(Client(), fake, groups=[GROUP]).status_code == 302
    assert _sign_in(Client(), fake, groups="").status_code == 302
    assert _roles(user) == ["engineer"]


def test_a_mapping_never_grants_the_administrator_role(client, provider, fake):
    admin_role = admin_role_ensure(actor=SYSTEM)
    UpstreamRoleMapping.objects.create(provider=provider, value="admins", role=admin_role)
    assert _sign_in(client, fake, groups=["admins", GROUP]).status_code == 302
    assert _roles(User.objects.get()) == ["engineer"]
    assert admin_role.name == ADMIN_ROLE


def test_just_in_time_usernames_are_safe_and_unique(client, provider, fake):
    make_user(username="ann")
    assert _sign_in(client, fake, sub="s-1", preferred_username="ann").status_code == 302
    assert _sign_in(Client(), fake, sub="s-2", preferred_username="аnn\u202e<script>").status_code == 302
    created = User.objects.filter(upstream_links__isnull=False).order_by("pk")
    first, second = (user.username for user in created)
    assert first.startswith("ann-") and len(first) == len("ann-") + 6
    assert second.startswith("nnscript")
    audit_actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"user.created", "upstream.linked", "login.succeeded"} <= audit_actions


def test_an_address_counts_as_verified_only_from_a_trusted_upstream(client, provider, fake):
    UpstreamProvider.objects.filter(pk=provider.pk).update(trust_email=False)
    assert _sign_in(client, fake, email="ann@fake.example", email_verified=True).status_code == 302
    assert User.objects.get().email_verified is False
    UpstreamProvider.objects.filter(pk=provider.pk).update(trust_email=True)
    assert _sign_in(Client(), fake, sub="s-2", email="bo@fake.example", email_verified="true").status_code == 302
    assert User.objects.get(email="bo@fake.example").email_verified is False  # the string is not true


def test_start_and_callback_are_rate_limited_with_the_sign_in(client, provider, fake, settings):
    settings.IDP_RATE_LIMITS = {name: "1000/minute" for name in settings.IDP_RATE_LIMITS} | {"signin.ip": "3/minute"}
    answers = [
        client.get(f"/accounts/upstream/{SLUG}/").status_code,
        _callback(client, state="s", code="c").status_code,
        client.get(f"/accounts/upstream/{SLUG}/").status_code,
        _callback(client, state="s", code="c").status_code,
    ]
    assert answers == [302, 400, 302, 429]


def test_linking_an_account_with_a_second_factor_needs_that_factor(client, provider, fake):
    local = make_user(username="ann-local", email="ann@fake.example")
    User.objects.filter(pk=local.pk).update(email_verified=True)
    totp_device(local)
    assert _sign_in(client, fake, email="ann@fake.example")["Location"] == "/accounts/link-upstream/"
    client.force_login(local)
    session_authenticated(client, amr=["pwd"])  # the password, not the factor it has
    assert client.post("/accounts/link-upstream/").status_code == 403
    session_authenticated(client, amr=["pwd"], seconds_ago=3600)  # before the link was asked for
    assert client.post("/accounts/link-upstream/").status_code == 403
    session_authenticated(client, amr=["pwd", "otp", "mfa"])
    linked = client.post("/accounts/link-upstream/")
    assert linked.status_code == 302 and linked["Location"] == "/dashboard/"
    assert UpstreamLink.objects.get().user == local
    assert client.post("/accounts/link-upstream/").status_code == 400  # done: nothing pending any more
    assert _refusals() == ["link_not_proved", "link_not_proved", "nothing_to_link"]
