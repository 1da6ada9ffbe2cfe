"""The management API, driven over HTTP against the live server with real tokens from the
provider: a user's through the authorization code flow (authlib), a service account's through
client_credentials (authlib)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.factories import (  # noqa: F401 - role_with and SYSTEM: imported from here too
    REDIRECT_URI,
    SYSTEM,
    make_client,
    make_machine_client,
    make_user,
    relying_party,
    role_with,
    tokens_at,
)

ALL_PERMISSIONS = (
    "idp.apikeys.manage",
    "idp.users.read",
    "idp.users.manage",
    "idp.roles.read",
    "idp.roles.manage",
    "idp.clients.read",
    "idp.clients.manage",
    "audit.read",
    "idp.mfa.reset",
)


@dataclass
class Api:
    """An HTTP client of /api/v1 holding one bearer token (or none)."""

    base_url: str
    token: str | None = None

    def request(self, method: str, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        url = path if path.startswith("http") else f"{self.base_url}/api/v1{path}"
        return requests.request(method, url, json=json, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


def client_credentials_token(live_server, issued, scope: str) -> str:
    session = OAuth2Session(issued.application.client_id, issued.client_secret, scope=scope)
    return session.fetch_token(f"{live_server.url}/oauth/token/", grant_type="client_credentials")["access_token"]


@dataclass
class Subject:
    """A caller of the API: a user (tokens through the authorization code flow of the admin
    console client) or a client_credentials client's service account."""

    kind: str
    live_server: Any
    holder: dict[str, Any]  # {"user": user} or {"client": application}: role_grant's keyword
    _issue: Callable[[str], str]
    _tokens: dict[str, str] = field(default_factory=dict)

    def api(self, scope: str = "idp.manage") -> Api:
        if scope not in self._tokens:
            self._tokens[scope] = self._issue(scope)
        return Api(self.live_server.url, self._tokens[scope])

    @property
    def actor(self) -> tuple[str, str]:
        if self.kind == "user":
            return ("user", str(self.holder["user"].pk))
        return ("client", self.holder["client"].client_id)

    def hold(self, codenames: Iterable[str]) -> None:
        """Make these, exactly, the subject's permissions: one role holding them, nothing else."""
        from accounts.models import RoleAssignment
        from accounts.services import role_grant, role_revoke

        for assignment in RoleAssignment.objects.filter(**self.holder):
            role_revoke(assignment=assignment, actor=SYSTEM)
        role_grant(role=role_with(codenames), actor=SYSTEM, **self.holder)


_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{secrets.token_hex(3)}"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 is slow by design (a user and a sign-in cost about half a second); these tests are
    about the API, not password storage, which keeps its own tests. Client secrets keep their
    hasher: the rotation tests check what it stores."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


@pytest.fixture
def management(db):
    """The management permissions and the idp-admin role, as migration 0004 makes them (the live
    server's tests flush the database between tests, so they are made again here)."""
    from accounts.services import admin_role_ensure

    return admin_role_ensure(actor=SYSTEM)


@pytest.fixture
def console(db):
    """An admin console: the confidential authorization-code client people sign in to for tokens
    with scope idp.manage."""
    return make_client(redirect_uris=[REDIRECT_URI], scopes=["openid", "profile", "idp.manage"])


@pytest.fixture
def user_subject(live_server, signing_key, management, console) -> Callable[..., Subject]:
    def make(**fields: Any) -> Subject:
        user = make_user(**fields)

        def issue(scope: str) -> str:
            scopes = "openid idp.manage" if scope == "idp.manage" else "openid profile"
            return tokens_at(relying_party(live_server.url, console), user, scope=scopes)["access_token"]

        return Subject("user", live_server, {"user": user}, issue)

    return make


@pytest.fixture
def service_subject(live_server, signing_key, management) -> Callable[[], Subject]:
    def make() -> Subject:
        issued = make_machine_client(scopes=["idp.manage", "profile"])
        return Subject(
            "service_account",
            live_server,
            {"client": issued.application},
            lambda scope: client_credentials_token(live_server, issued, scope if scope == "idp.manage" else "profile"),
        )

    return make


@pytest.fixture
def admin(service_subject) -> Subject:
    """A service account holding the idp-admin role: the cheapest full administrator."""
    subject = service_subject()
    subject.hold(ALL_PERMISSIONS)
    subject.api()  # its token now, so tests comparing audit rows see no token.issued of it
    return subject


@pytest.fixture
def anonymous(live_server) -> Api:
    return Api(live_server.url)


def error_of(reply: requests.Response) -> str | None:
    try:
        body = reply.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None
