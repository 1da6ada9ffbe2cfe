"""A real relying party for the tests: authlib's OAuth2Session for the client side, and a
requests session with its own cookie jar standing in for the user's browser."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet


class _FormParser(HTMLParser):
    """Collects the inputs of the first form on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self._done:
            self._in_form = True
            self.action = attributes.get("action") or None
        elif tag == "input" and self._in_form and attributes.get("name"):
            if attributes.get("type") in {"submit", "checkbox"}:
                return
            self.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def parse_form(html: str) -> tuple[str | None, dict[str, str]]:
    parser = _FormParser()
    parser.feed(html)
    return parser.action, parser.fields


@dataclass
class AuthorizationResult:
    """Where the provider finally sent the browser back to the client."""

    location: str
    params: dict[str, str]
    code_verifier: str | None
    nonce: str
    state: str


@dataclass
class RelyingParty:
    base_url: str
    client_id: str
    client_secret: str | None
    redirect_uri: str
    browser: requests.Session = field(default_factory=requests.Session)
    sign_ins: int = 0  # how many times the provider showed the sign-in form and got it posted
    _metadata: dict[str, Any] | None = None

    # --- discovery ------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            reply = requests.get(f"{self.base_url}/.well-known/openid-configuration", timeout=10)
            reply.raise_for_status()
            self._metadata = reply.json()
        return self._metadata

    def session(self, **kwargs: Any) -> OAuth2Session:
        return OAuth2Session(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            token_endpoint_auth_method=kwargs.pop(
                "token_endpoint_auth_method", "client_secret_basic" if self.client_secret else "none"
            ),
            **kwargs,
        )

    def authorization_url(self, **params: str | None) -> str:
        """A hand-made authorization request URL (authlib's would fill in what a test leaves out):
        code flow, scope openid, a fresh state, with `params` over them; a None drops a parameter."""
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": "st-" + secrets.token_hex(4),
        } | params
        present = {name: value for name, value in query.items() if value is not None}
        return requests.Request("GET", self.metadata["authorization_endpoint"], params=present).prepare().url or ""

    # --- the user's side ------------------------------------------------------------------------
    def sign_in_form(self, reply: requests.Response, username: str, password: str) -> requests.Response:
        """Post the real login form, CSRF token included, as a browser would."""
        action, fields = parse_form(reply.text)
        assert "csrfmiddlewaretoken" in fields, "the login page carries a CSRF token"
        fields.update(username=username, password=password)
        self.sign_ins += 1
        return self.browser.post(
            urljoin(reply.url, action or reply.url), data=fields, allow_redirects=False, timeout=10
        )

    def follow(
        self,
        reply: requests.Response,
        *,
        username: str,
        password: str,
        consent: str | None,
        second_factor: Callable[[], str] | None = None,
    ) -> requests.Response:
        """Follow the provider's redirects until it leaves for the client (or stops on a page).

        consent: "allow", "allow-remember", "deny", or None to expect no consent page.
        second_factor: gives the code from the authenticator app when the provider asks for it
        (without it, the second-factor page is where this stops).
        """
        for _ in range(10):
            if reply.status_code in (301, 302, 303):
                target = urljoin(reply.url, reply.headers["Location"])
                if not target.startswith(self.base_url):
                    return reply
                reply = self.browser.get(target, allow_redirects=False, timeout=10)
                continue
            if reply.status_code == 200 and 'name="password"' in reply.text:
                reply = self.sign_in_form(reply, username, password)
                continue
            if reply.status_code == 200 and 'id="id_totp_code"' in reply.text and second_factor is not None:
                _, fields = parse_form(reply.text)
                fields.update(method="totp", code=second_factor())
                reply = self.browser.post(reply.url, data=fields, allow_redirects=False, timeout=10)
                second_factor = None  # asked once: a second ask is where the test looks
                continue
            if reply.status_code == 200 and 'id="authorizationForm"' in reply.text:
                assert consent is not None, "a consent page appeared where none was expected"
                _, fields = parse_form(reply.text)
                if consent.startswith("allow"):
                    fields["allow"] = "on"
                if consent == "allow-remember":
                    fields["remember"] = "on"
                reply = self.browser.post(reply.url, data=fields, allow_redirects=False, timeout=10)
                consent = None
                continue
            return reply
        raise AssertionError("too many redirects")

    def authorize(
        self,
        *,
        username: str,
        password: str,
        scope: str = "openid profile email offline_access",
        pkce: bool = True,
        consent: str | None = "allow",
        second_factor: Callable[[], str] | None = None,
        **extra: str,
    ) -> AuthorizationResult:
        """Run the front channel: authorization request, sign-in, consent, redirect back."""
        verifier = generate_token(48) if pkce else None
        nonce = secrets.token_urlsafe(16)
        state = secrets.token_urlsafe(16)
        client = self.session(scope=scope, code_challenge_method="S256" if pkce else None)
        url, _ = client.create_authorization_url(
            self.metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce, **extra
        )
        reply = self.follow(
            self.browser.get(url, allow_redirects=False, timeout=10),
            username=username,
            password=password,
            consent=consent,
            second_factor=second_factor,
        )
        assert reply.status_code == 302, (
            f"expected a redirect to the client, got {reply.status_code}: {reply.text[:300]}"
        )
        location = reply.headers["Location"]
        assert location.startswith(self.redirect_uri), location
        params = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
        return AuthorizationResult(location=location, params=params, code_verifier=verifier, nonce=nonce, state=state)

    # --- the client's back channel --------------------------------------------------------------
    def exchange(self, result: AuthorizationResult, **kwargs: Any) -> dict[str, Any]:
        client = self.session(state=result.state)
        return dict(
            client.fetch_token(
                self.metadata["token_endpoint"],
                authorization_response=result.location,
                code_verifier=result.code_verifier,
                **kwargs,
            )
        )

    def token_request(self, auth: tuple[str, str] | None = None, **data: str) -> requests.Response:
        """A raw token request, for the cases authlib (rightly) refuses to send."""
        if auth is None and self.client_secret:
            auth = (self.client_id, self.client_secret)
        if auth is None:
            data.setdefault("client_id", self.client_id)
        return requests.post(self.metadata["token_endpoint"], data=data, auth=auth, timeout=10)

    def verify_id_token(self, id_token: str, *, nonce: str | None) -> dict[str, Any]:
        """Verify signature (by kid, against the published JWKS), iss, aud, exp and nonce."""
        jwks = requests.get(self.metadata["jwks_uri"], timeout=10).json()
        decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
        assert decoded.header["alg"] == "RS256"
        assert decoded.header["kid"] in {key["kid"] for key in jwks["keys"]}
        expectations: dict[str, Any] = {
            "iss": {"essential": True, "value": self.metadata["issuer"]},
            "aud": {"essential": True, "value": self.client_id},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "sub": {"essential": True},
        }
        if nonce is not None:
            expectations["nonce"] = {"essential": True, "value": nonce}
        jwt.JWTClaimsRegistry(**expectations).validate(decoded.claims)
        return decoded.claims
