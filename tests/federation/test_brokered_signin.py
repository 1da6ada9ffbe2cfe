"""Signing in through the company directory, a second instance of this provider (conftest's
`upstream`): in a real browser from the sign-in page's button, and for a real OAuth client
(authlib) of the downstream, whose tokens carry the roles the directory's groups map to."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from playwright.sync_api import Browser, Page, expect

from accounts.models import RoleAssignment, User
from audit.models import AuditEvent
from idp.models import UpstreamLink
from tests.browser import _orm_beside_playwright, browser  # noqa: F401 - fixtures
from tests.factories import REDIRECT_URI, USER_PASSWORD, make_client, make_user, relying_party
from tests.federation.conftest import (
    DISPLAY_NAME,
    LOCAL_ROLE,
    SLUG,
    UPSTREAM_PASSWORD,
    Person,
    Upstream,
    downstream_url,
)
from tests.relying_party import AuthorizationResult, parse_form

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the fixture imported from tests.browser
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def _events(user, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(user.pk)).order_by("id"))


def _through_the_directory(page: Page, live: str, upstream: Upstream, person: Person, *, start: str) -> None:
    """From a signed-out visit to `start`: the sign-in page's button, the directory's sign-in and
    consent, and back."""
    page.goto(f"{live}{start}")
    expect(page).to_have_url(re.compile(re.escape(f"{live}/accounts/login/")))
    page.get_by_role("link", name=f"Continue with {DISPLAY_NAME}").click()
    expect(page).to_have_url(re.compile(re.escape(f"{upstream.server.url}/accounts/login/")))
    page.get_by_label("Username").fill(person.username)
    page.get_by_label("Password").fill(UPSTREAM_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(re.escape(f"{upstream.server.url}/accounts/login/")))
    if page.url.startswith(upstream.server.url):
        page.get_by_role("button", name="Allow").click()  # the directory asks its consent
    page.wait_for_url(re.compile(re.escape(live) + ".*"))


def test_first_sign_in_creates_the_user_with_the_mapped_role_and_the_next_reuses_the_link(
    browser: Browser,  # noqa: F811 - the fixture imported from tests.browser
    page: Page,
    corp,
    upstream: Upstream,
    live_server,
):
    live = downstream_url(live_server)
    _through_the_directory(page, live, upstream, upstream.ada, start="/dashboard/")
    expect(page).to_have_url(f"{live}/dashboard/")

    user = User.objects.get(upstream_links__subject=upstream.ada.sub)
    assert (user.username, user.email, user.first_name) == ("ada", "ada@corp.example", "Ada")
    assert user.email_verified  # the directory said so, and the operator trusts its addresses
    assert not user.has_usable_password()  # signs in through the directory only
    assert list(user.role_assignments.values_list("role__name", flat=True)) == [LOCAL_ROLE]
    [created] = _events(user, "user.created")
    assert (created.actor_type, created.actor_id) == ("system", f"upstream:{SLUG}")
    [linked] = _events(user, "upstream.linked")
    assert linked.data == {"upstream": SLUG, "how": "just_in_time"}
    assert [event.data["role"] for event in _events(user, "role.granted")] == [LOCAL_ROLE]
    [verified] = _events(user, "email.verified")  # recorded as every other way an address is verified
    assert ((verified.actor_type, verified.actor_id), verified.data) == (
        ("system", f"upstream:{SLUG}"),
        {"via": "upstream"},
    )
    [signed_in] = _events(user, "login.succeeded")
    assert signed_in.data == {"methods": ["fed"], "acr": "urn:idp:acr:pwd"}

    # Again, in another browser: the link (issuer and sub) names the user; nothing is created.
    context = browser.new_context()
    again = context.new_page()
    again.set_default_timeout(10_000)
    _through_the_directory(again, live, upstream, upstream.ada, start="/dashboard/")
    expect(again).to_have_url(f"{live}/dashboard/")
    context.close()
    assert User.objects.count() == 1
    assert UpstreamLink.objects.get().last_signin_at is not None
    assert len(_events(user, "login.succeeded")) == 2
    assert len(_events(user, "role.granted")) == 1  # held already: granted once


def test_an_existing_local_address_is_linked_only_after_its_password(page: Page, corp, upstream: Upstream, live_server):
    live = downstream_url(live_server)
    local = make_user(username="robert", email=upstream.bob.email)
    User.objects.filter(pk=local.pk).update(email_verified=True)

    _through_the_directory(page, live, upstream, upstream.bob, start="/dashboard/")
    expect(page).to_have_url(f"{live}/accounts/link-upstream/")
    expect(page.get_by_role("button", name="Link accounts")).to_have_count(0)
    assert not UpstreamLink.objects.exists()
    assert User.objects.count() == 1  # no second account for the same address

    page.get_by_role("link", name="Sign in to the existing account").click()
    page.get_by_label("Username").fill("robert")
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live}/accounts/link-upstream/")
    page.get_by_role("button", name="Link accounts").click()
    expect(page).to_have_url(f"{live}/dashboard/")

    link = UpstreamLink.objects.get()
    assert (link.user_id, link.subject) == (local.pk, upstream.bob.sub)
    [linked] = _events(local, "upstream.linked")
    assert linked.data == {"upstream": SLUG, "how": "proved_local_account"}
    assert (linked.actor_type, linked.actor_id) == ("user", str(local.pk))

    # From now on the directory signs robert in directly.
    page.context.clear_cookies()
    _through_the_directory(page, live, upstream, upstream.bob, start="/dashboard/")
    expect(page).to_have_url(f"{live}/dashboard/")
    assert [event.data["methods"] for event in _events(local, "login.succeeded")] == [["pwd"], ["fed"]]


# --- A real OAuth client of the downstream -----------------------------------------------------------


def _follow(session: requests.Session, url: str, *, live: str, upstream: Upstream, person: Person) -> str:
    """A browser without JavaScript (requests) from the downstream's authorization request to the
    client's redirect URI: the downstream's sign-in page and its directory button, the directory's
    sign-in and consent, the downstream's consent. Returns the URL the client got, and every
    directory callback URL it passed on the way in `session.callbacks`."""
    reply = session.get(url, allow_redirects=False, timeout=10)
    for _ in range(20):
        if reply.status_code in (301, 302, 303):
            target = urljoin(reply.url, reply.headers["Location"])
            if target.startswith(REDIRECT_URI):
                return target
            if "/callback/" in target:
                session.callbacks.append(target)  # type: ignore[attr-defined]
            reply = session.get(target, allow_redirects=False, timeout=10)
            continue
        assert reply.status_code == 200, (reply.status_code, reply.url, reply.text[:300])
        if reply.url.startswith(f"{live}/accounts/login/"):
            found = re.search(rf'href="(/accounts/upstream/{SLUG}/[^"]*)"', reply.text)
            assert found, "the sign-in page offers the directory"
            reply = session.get(urljoin(live, html.unescape(found.group(1))), allow_redirects=False, timeout=10)
            continue
        action, fields = parse_form(reply.text)
        if 'name="password"' in reply.text:
            assert reply.url.startswith(upstream.server.url), reply.url
            fields.update(username=person.username, password=UPSTREAM_PASSWORD)
        elif 'id="authorizationForm"' in reply.text:
            fields["allow"] = "on"
        else:
            raise AssertionError(f"unexpected page {reply.url}: {reply.text[:300]}")
        reply = session.post(urljoin(reply.url, action or reply.url), data=fields, allow_redirects=False, timeout=10)
    raise AssertionError("too many steps")


def test_a_client_of_the_downstream_gets_tokens_with_the_mapped_roles_and_a_callback_works_once(
    corp, upstream: Upstream, live_server
):
    live = downstream_url(live_server)
    issued = make_client(scopes=["openid", "profile", "email", "roles"])
    rp = relying_party(live, issued)
    rp.browser.callbacks = []  # type: ignore[attr-defined]
    verifier, nonce, state = generate_token(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    client = rp.session(scope="openid profile email roles", code_challenge_method="S256")
    url, _ = client.create_authorization_url(
        rp.metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
    )
    location = _follow(rp.browser, url, live=live, upstream=upstream, person=upstream.ada)
    params = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    tokens = rp.exchange(
        AuthorizationResult(location=location, params=params, code_verifier=verifier, nonce=nonce, state=state)
    )
    claims = rp.verify_id_token(tokens["id_token"], nonce=nonce)
    assert claims["roles"] == [LOCAL_ROLE]
    assert claims["amr"] == ["fed"]
    assert claims["email"] == "ada@corp.example" and claims["email_verified"] is True
    user = User.objects.get(pk=int(claims["sub"]))
    assert RoleAssignment.objects.filter(user=user, role__name=LOCAL_ROLE).exists()

    # The directory's callback, presented again (by the same browser or another): refused, and
    # nobody is signed in by it.
    [callback] = rp.browser.callbacks  # type: ignore[attr-defined]
    signed_in = len(_events(user, "login.succeeded"))
    for browser_session in (rp.browser, requests.Session()):
        replayed = browser_session.get(callback, allow_redirects=False, timeout=10)
        assert replayed.status_code == 400
        assert "not valid here any more" in replayed.text
    assert len(_events(user, "login.succeeded")) == signed_in
    refusals = AuditEvent.objects.filter(action="upstream.signin_failed")
    assert [event.data for event in refusals] == [{"upstream": SLUG, "reason": "state_mismatch"}] * 2
