"""Security headers, through HTTP against the live server: the Content-Security-Policy on pages,
nosniff and Referrer-Policy everywhere, and Cache-Control: no-store on every response that carries
a token, a secret or a person's data."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from authlib.common.security import generate_token
from playwright.sync_api import expect, sync_playwright

from tests.api.conftest import (  # noqa: F401  (fixtures)
    _fast_password_hashing,
    admin,
    management,
    service_subject,
)
from tests.factories import (
    USER_PASSWORD,
    make_machine_client,
    make_staff,
    sign_in_at,
    signed_in_client,
    signed_in_session,
)

REPO = Path(__file__).resolve().parent.parent.parent


def csp_of(reply: requests.Response) -> dict[str, list[str]]:
    policy = reply.headers["Content-Security-Policy"]
    directives = [part.strip().split() for part in policy.split(";") if part.strip()]
    return {name: values for name, *values in directives}


def assert_strict_page_headers(reply: requests.Response) -> None:
    csp = csp_of(reply)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"], "no inline script, no eval, nothing foreign"
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "same-origin"
    assert reply.headers["X-Frame-Options"] == "DENY"


def consent_page(rp, username: str) -> requests.Response:
    """The browser's way to the consent page: authorization request, sign-in, then the form."""
    client = rp.session(scope="openid profile", code_challenge_method="S256")
    url, _ = client.create_authorization_url(
        rp.metadata["authorization_endpoint"],
        state=secrets.token_urlsafe(8),
        code_verifier=generate_token(48),
        nonce=secrets.token_urlsafe(8),
    )
    reply = rp.browser.get(url, allow_redirects=False, timeout=10)
    for _ in range(6):
        if reply.status_code in (301, 302, 303):
            reply = rp.browser.get(urljoin(reply.url, reply.headers["Location"]), allow_redirects=False, timeout=10)
        elif 'name="password"' in reply.text:
            reply = rp.sign_in_form(reply, username, USER_PASSWORD)
        else:
            break
    assert 'id="authorizationForm"' in reply.text
    return reply


def test_the_sign_in_page_has_the_strict_policy(live_server):
    reply = requests.get(f"{live_server.url}/accounts/login/", timeout=10)
    assert reply.status_code == 200
    assert_strict_page_headers(reply)
    # Its style sheet is a file of ours, so style-src 'self' still styles the page.
    (stylesheet,) = re.findall(r'<link rel="stylesheet" href="([^"]+)"', reply.text)
    assert requests.get(urljoin(reply.url, stylesheet), timeout=10).status_code == 200


def test_the_consent_page_has_the_strict_policy(rp, alice):
    assert_strict_page_headers(consent_page(rp, alice.username))


def test_the_dashboard_has_the_strict_policy(live_server, alice):
    browser = signed_in_session(live_server.url, alice)
    reply = browser.get(f"{live_server.url}/dashboard/", timeout=10)
    assert reply.status_code == 200 and reply.url.endswith("/dashboard/")
    assert_strict_page_headers(reply)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_error_pages_have_the_strict_policy(live_server, method):
    path = "/no-such-page/" if method == "GET" else "/accounts/login/"  # 404; a POST without CSRF: 403
    reply = requests.request(method, f"{live_server.url}{path}", timeout=10)
    assert reply.status_code >= 400
    assert_strict_page_headers(reply)


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/oauth/token/", "/api/v1/users/"])
def test_program_endpoints_send_nosniff(live_server, signing_key, path):
    reply = requests.get(f"{live_server.url}{path}", timeout=10)
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "same-origin"


def test_swagger_ui_runs_no_inline_script(live_server):
    """Swagger UI's page gets inline styles (its own markup needs them) but scripts stay files."""
    reply = requests.get(f"{live_server.url}/api/docs/", timeout=10)
    csp = csp_of(reply)
    assert csp["script-src"] == ["'self'"]
    assert set(csp["style-src"]) == {"'self'", "'unsafe-inline'"}
    assert csp["frame-ancestors"] == ["'none'"]
    assert re.findall(r"<script>", reply.text) == [], "every script element has a src"
    (init,) = [src for src in re.findall(r'<script src="([^"]+)"', reply.text) if "script" in src.split("?")[-1]]
    script = requests.get(urljoin(reply.url, init), timeout=10)
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.text


def test_the_admin_allows_inline_styles_but_not_scripts(db):
    # Admin's pages, reached by staff signed in with a second factor (its own login page only
    # redirects to ours, which is a strict page).
    reply = signed_in_client(make_staff(superuser=True)).get("/admin/")
    assert reply.status_code == 200
    csp = csp_of(reply)
    assert csp["script-src"] == ["'self'"]
    assert set(csp["style-src"]) == {"'self'", "'unsafe-inline'"}
    assert csp["frame-ancestors"] == ["'none'"]


TEMPLATE_DIRS = [REPO / "templates", *REPO.glob("*/templates")]


@pytest.mark.parametrize(
    "template", sorted({path for folder in TEMPLATE_DIRS for path in folder.rglob("*.html")}), ids=str
)
def test_no_template_holds_inline_script_or_style(template):
    text = template.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "an inline <script>"
    assert "<style" not in text, "an inline <style>"
    assert not re.search(r"\son[a-z]+\s*=", text), "an inline event handler"
    assert "javascript:" not in text.lower()
    assert not re.search(r"\sstyle\s*=", text), "a style attribute"


# --- Cache-Control: no-store --------------------------------------------------------------------


def assert_no_store(reply: requests.Response) -> None:
    assert "no-store" in reply.headers.get("Cache-Control", ""), reply.headers.get("Cache-Control")


def test_token_and_userinfo_and_introspection_responses_are_no_store(rp, alice, live_server):
    result = sign_in_at(rp, alice, scope="openid profile")
    token_reply = rp.token_request(
        grant_type="authorization_code",
        code=result.params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=result.code_verifier,
    )
    assert token_reply.status_code == 200
    assert_no_store(token_reply)
    access_token = token_reply.json()["access_token"]

    userinfo = requests.get(
        f"{live_server.url}/oauth/userinfo/", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
    assert userinfo.status_code == 200
    assert_no_store(userinfo)

    introspection = requests.post(
        f"{live_server.url}/oauth/introspect/",
        data={"token": access_token},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert introspection.status_code == 200
    assert_no_store(introspection)

    refused = rp.token_request(grant_type="authorization_code", code=result.params["code"])
    assert refused.status_code == 400
    assert_no_store(refused)


def test_client_credentials_token_response_is_no_store(live_server, signing_key):
    issued = make_machine_client()
    reply = requests.post(
        f"{live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(issued.application.client_id, issued.client_secret),
        timeout=10,
    )
    assert reply.status_code == 200
    assert_no_store(reply)


def test_management_api_responses_are_no_store(admin, live_server):  # noqa: F811
    api = admin.api()
    created = api.post(
        "/clients/",
        {
            "name": "No store",
            "client_type": "confidential",
            "grant": "client_credentials",
            "scopes": ["profile"],
        },
    )
    assert created.status_code == 201, created.text
    assert_no_store(created)
    client_id = created.json()["client"]["client_id"]
    rotated = api.post(f"/clients/{client_id}/rotate-secret/", {"grace_seconds": 0})
    assert rotated.status_code == 200, rotated.text
    assert_no_store(rotated)
    for path in ("/clients/", "/users/", "/audit/"):
        reply = api.get(path)
        assert reply.status_code == 200, path
        assert_no_store(reply)
    assert_no_store(requests.get(f"{live_server.url}/api/v1/users/", timeout=10))  # errors too


# --- In a real browser ----------------------------------------------------------------------------


@pytest.fixture
def chromium_page(monkeypatch):
    """Debian's chromium through Playwright, as tests/apikeys/test_dashboard_browser.py does."""
    from django.db import connections

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM calls between browser steps
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True)
        page = browser.new_page()
        page.set_default_timeout(10_000)
        yield page
        browser.close()
        connections.close_all()


def test_sign_in_and_consent_work_in_a_browser_without_csp_violations(chromium_page, rp, alice):
    """Chromium applies form-action to the redirects after a form POST: the consent form's POST
    answers with a redirect to the client, so this is the test that the policy lets it through."""
    page = chromium_page
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    arrived: list[str] = []

    def client_callback(route):
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="signed in")

    page.route("http://127.0.0.1:9999/**", client_callback)
    verifier = generate_token(48)
    session = rp.session(scope="openid profile", code_challenge_method="S256")
    url, state = session.create_authorization_url(
        rp.metadata["authorization_endpoint"], code_verifier=verifier, nonce=secrets.token_urlsafe(8)
    )

    page.goto(url)
    page.get_by_label("Username").fill(alice.username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    allow = page.get_by_role("button", name="Allow")
    expect(allow).to_have_css("color", "rgb(255, 255, 255)")  # the style sheet applied under the CSP
    allow.click()
    page.wait_for_url("http://127.0.0.1:9999/**")

    assert problems == [], problems
    (callback,) = arrived
    code = dict(part.split("=", 1) for part in callback.split("?", 1)[1].split("&"))["code"]
    tokens = rp.token_request(
        grant_type="authorization_code", code=code, redirect_uri=rp.redirect_uri, code_verifier=verifier
    )
    assert tokens.status_code == 200, tokens.text
