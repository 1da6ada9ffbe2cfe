"""oidcc-rp-initiated-logout-certification-test-plan: OpenID Connect RP-Initiated Logout 1.0 as the
OpenID Foundation's plan drives it. The provider redirects after logout only to a registered
post_logout_redirect_uri, exactly as registered, of the client a valid id_token_hint names; every
other request ends on a page of ours."""

from __future__ import annotations

import base64
import json
import secrets
from urllib.parse import urljoin, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conformance.conftest import sign_in
from tests.conftest import POST_LOGOUT_REDIRECT_URI
from tests.relying_party import AuthorizationResult, RelyingParty, parse_form

CLIENT_ORIGIN = "{0.scheme}://{0.netloc}".format(urlsplit(POST_LOGOUT_REDIRECT_URI))


def signed_in_id_token(op: RelyingParty, subject) -> str:
    """Sign the subject in at the provider (consent remembered) and return the ID token the RP got."""
    return op.exchange(sign_in(op, subject, scope="openid"))["id_token"]


def end_session(op: RelyingParty, **params: str) -> list[requests.Response]:
    """The user's browser at the end_session_endpoint: follows the provider's own redirects and, on
    the confirmation page, chooses "Sign out". Returns every response along the way; it stops at
    the first one that is not a redirect within the provider and not the confirmation page."""
    replies = [op.browser.get(op.metadata["end_session_endpoint"], params=params, allow_redirects=False, timeout=10)]
    confirmed = False
    for _ in range(5):
        reply = replies[-1]
        if reply.status_code in (301, 302, 303):
            target = urljoin(reply.url, reply.headers["Location"])
            if not target.startswith(op.base_url + "/"):
                break
            replies.append(op.browser.get(target, allow_redirects=False, timeout=10))
        elif reply.status_code == 200 and 'name="allow"' in reply.text and not confirmed:
            _, fields = parse_form(reply.text)
            fields["allow"] = "on"
            confirmed = True
            replies.append(op.browser.post(reply.url, data=fields, allow_redirects=False, timeout=10))
        else:
            break
    return replies


def assert_stays_with_the_provider(op: RelyingParty, replies: list[requests.Response]) -> requests.Response:
    """No response sends the browser to the client, and the user ends on a page of ours."""
    for reply in replies:
        location = urljoin(reply.url, reply.headers.get("Location", ""))
        assert not location.startswith(CLIENT_ORIGIN), f"redirected to the client: {location}"
    final = replies[-1]
    assert final.status_code not in (301, 302, 303, 307, 308), final.headers.get("Location")
    assert final.url.startswith(op.base_url + "/")
    return final


def assert_rejected(op: RelyingParty, replies: list[requests.Response]) -> None:
    """The request is refused by the provider itself: no confirmation, no redirect. (What the user
    sees then is test_refused_logout_request_is_shown_as_an_error_page's concern.)"""
    final = assert_stays_with_the_provider(op, replies)
    assert len(replies) == 1, "an invalid request is refused before any confirmation"
    assert final.status_code == 400, final.text[:300]


def assert_signed_out_page(op: RelyingParty, replies: list[requests.Response], *, asked: bool = True) -> None:
    """The user ends on our signed-out page: asked first, unless the request carried an unexpired
    id_token_hint of this very session from its client (RP-Initiated Logout §2: it may skip)."""
    final = assert_stays_with_the_provider(op, replies)
    confirmation = replies[0].status_code == 200 and 'name="allow"' in replies[0].text
    assert confirmation == asked, "the user is asked to confirm" if asked else "no question for this session's hint"
    assert final.status_code == 200, final.text[:300]
    assert "signed out" in final.text.lower()


def silent_authorization(op: RelyingParty, subject) -> AuthorizationResult:
    """An authorization request with prompt=none: it must answer at once, without a sign-in form."""
    before = op.sign_ins
    result = sign_in(op, subject, prompt="none", consent=None)
    assert op.sign_ins == before, "prompt=none never shows the sign-in form"
    return result


def assert_session_ended(op: RelyingParty, subject) -> None:
    result = silent_authorization(op, subject)
    assert result.params.get("error") == "login_required", result.params
    assert "code" not in result.params


def assert_still_signed_in(op: RelyingParty, subject) -> None:
    result = silent_authorization(op, subject)
    assert "code" in result.params, result.params


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unverified_parts(id_token: str) -> tuple[dict, dict]:
    """The header and claims of a compact JWT, read without verifying anything."""
    header, payload, _ = id_token.split(".")
    return tuple(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in (header, payload))


def test_oidcc_rp_initiated_logout_discovery(op):
    """The discovery document announces an absolute end_session_endpoint."""
    endpoint = op.metadata.get("end_session_endpoint")
    assert endpoint, "end_session_endpoint is missing"
    parts = urlsplit(endpoint)
    assert parts.scheme in ("https", "http") and parts.netloc
    assert endpoint.startswith(op.metadata["issuer"] + "/")


def test_oidcc_rp_initiated_logout(op, subject):
    """With a valid id_token_hint (of this session, from this client) and the registered
    post_logout_redirect_uri, the OP logs the user out and redirects there with the state; the
    session is over."""
    id_token = signed_in_id_token(op, subject)
    state = secrets.token_urlsafe(16)
    replies = end_session(op, id_token_hint=id_token, post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI, state=state)
    assert len(replies) == 1, "this session's own hint skips the question"
    final = replies[-1]
    assert final.status_code == 302, final.text[:300]
    assert final.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state={state}"
    assert_session_ended(op, subject)


def test_oidcc_rp_initiated_logout_bad_post_logout_redirect_uri(op, subject):
    """An unregistered post_logout_redirect_uri is never redirected to, and the user stays signed in."""
    id_token = signed_in_id_token(op, subject)
    replies = end_session(
        op,
        id_token_hint=id_token,
        post_logout_redirect_uri=f"{CLIENT_ORIGIN}/not-registered",
        state=secrets.token_urlsafe(16),
    )
    assert_rejected(op, replies)
    assert_still_signed_in(op, subject)


def test_oidcc_rp_initiated_logout_query_added_to_post_logout_redirect_uri(op, subject):
    """The registered post_logout_redirect_uri with a query added is a different URI: no redirect."""
    id_token = signed_in_id_token(op, subject)
    replies = end_session(
        op,
        id_token_hint=id_token,
        post_logout_redirect_uri=f"{POST_LOGOUT_REDIRECT_URI}?extra=1",
        state=secrets.token_urlsafe(16),
    )
    assert_rejected(op, replies)


def test_oidcc_rp_initiated_logout_modified_id_token_hint(op, subject):
    """An id_token_hint whose signature was tampered with is refused: no redirect."""
    id_token = signed_in_id_token(op, subject)
    header, payload, signature = id_token.split(".")
    tampered = signature[:8] + "".join("A" if c != "A" else "B" for c in signature[8:16]) + signature[16:]
    assert tampered != signature
    replies = end_session(
        op,
        id_token_hint=f"{header}.{payload}.{tampered}",
        post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI,
        state=secrets.token_urlsafe(16),
    )
    assert_rejected(op, replies)


def test_oidcc_rp_initiated_logout_id_token_hint_alg_none(op, subject):
    """An unsigned (alg none) id_token_hint with the real token's claims is refused: no redirect."""
    id_token = signed_in_id_token(op, subject)
    _, payload, _ = id_token.split(".")
    unsigned = f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."
    replies = end_session(
        op,
        id_token_hint=unsigned,
        post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI,
        state=secrets.token_urlsafe(16),
    )
    assert_rejected(op, replies)


def test_oidcc_rp_initiated_logout_id_token_hint_other_key(op, subject):
    """An id_token_hint with the real claims and kid but signed by another key is refused: no redirect."""
    id_token = signed_in_id_token(op, subject)
    header, claims = unverified_parts(id_token)
    forged = jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, RSAKey.generate_key(2048))
    replies = end_session(
        op,
        id_token_hint=forged,
        post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI,
        state=secrets.token_urlsafe(16),
    )
    assert_rejected(op, replies)


def test_oidcc_rp_initiated_logout_no_id_token_hint(op, subject):
    """A post_logout_redirect_uri without an id_token_hint cannot be tied to a client: no redirect."""
    signed_in_id_token(op, subject)
    replies = end_session(op, post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI, state=secrets.token_urlsafe(16))
    assert_rejected(op, replies)


def test_oidcc_rp_initiated_logout_no_post_logout_redirect_uri(op, subject):
    """With an id_token_hint only, the OP logs the user out and shows its own signed-out page."""
    id_token = signed_in_id_token(op, subject)
    replies = end_session(op, id_token_hint=id_token)
    assert_signed_out_page(op, replies, asked=False)
    assert_session_ended(op, subject)


def test_oidcc_rp_initiated_logout_only_state(op, subject):
    """With only a state, the OP logs the user out on its own signed-out page and sends nothing anywhere."""
    signed_in_id_token(op, subject)
    replies = end_session(op, state=secrets.token_urlsafe(16))
    assert_signed_out_page(op, replies)
    assert_session_ended(op, subject)


def test_oidcc_rp_initiated_logout_no_params(op, subject):
    """With no parameters at all, the OP asks, logs the user out and shows its signed-out page."""
    signed_in_id_token(op, subject)
    replies = end_session(op)
    assert_signed_out_page(op, replies)
    assert_session_ended(op, subject)


def test_refused_logout_request_is_shown_as_an_error_page(op, subject):
    """The end_session_endpoint is visited by the user's browser, so a refusal is an HTML page that
    says the sign-out cannot continue (the suite's tester screenshots it), not a JSON body."""
    id_token = signed_in_id_token(op, subject)
    replies = end_session(
        op, id_token_hint=id_token, post_logout_redirect_uri=f"{CLIENT_ORIGIN}/not-registered", state="s"
    )
    assert_rejected(op, replies)
    page = replies[-1]
    assert page.headers["Content-Type"].startswith("text/html"), page.text[:300]
    assert "cannot continue" in page.text
