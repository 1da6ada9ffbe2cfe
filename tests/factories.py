"""Everything a test needs to set up, in one place: minimal valid objects with unique random values,
made through the services so that audit rows and hashing are real, and callers signed in the way
people sign in.

People
- ``make_user(**fields)``: a user whose password is USER_PASSWORD.
- ``make_staff(permissions=..., model_permissions=..., superuser=..., staff=...)``: a staff member
  holding RBAC permissions (through one global role holding exactly them, ``role_with``) and/or
  Django model permissions ("app_label.codename").
- ``role_with(codenames)``: the global role holding exactly these RBAC permissions.

Clients (each returns ``IssuedClient``: ``.application`` and the raw ``.client_secret``)
- ``make_client(**overrides)``: a confidential authorization-code client redirecting to REDIRECT_URI.
- ``make_public_client(**overrides)``: a public authorization-code client (no secret; PKCE).
- ``make_machine_client(**overrides)``: a client_credentials client with scope profile.
- ``make_resource_server(**overrides)``: a confidential client that only introspects.

Signed in
- ``relying_party(base_url, issued)``: tests.relying_party.RelyingParty for a client, on a live server.
- ``sign_in_at(rp, user, **kwargs)``: the front channel at a relying party (sign-in, consent, code).
- ``tokens_at(rp, user, **kwargs)``: the same, and the code exchanged for tokens.
- ``signed_in_session(base_url, user)``: a ``requests.Session`` signed in through the real sign-in
  form (/accounts/login/) of a live server, CSRF token included.
- ``signed_in_client(user)``: Django's test client with the user's session.
- ``post_sign_in_form(username, password, ip=...)``: one attempt at the sign-in form through Django's
  test client, from an address, CSRF token included (failures for lockout and brute-force tests).

The real-browser (Playwright) sign-in is tests/browser.py's ``sign_in_page``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urljoin

import factory
import requests

import audit
from tests.relying_party import AuthorizationResult, RelyingParty, parse_form

USER_PASSWORD = "correct horse battery staple"  # a test-only password; tests sign in with it
REDIRECT_URI = "http://127.0.0.1:9999/callback"
POST_LOGOUT_REDIRECT_URI = "http://127.0.0.1:9999/signed-out"
SYSTEM = audit.Actor.system("tests")


# --- People ---------------------------------------------------------------------------------------


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "accounts.User"

    username = factory.Sequence(lambda n: f"user{n}-{secrets.token_hex(3)}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")


def make_user(**fields):
    from accounts.services import user_create

    data = factory.build(dict, FACTORY_CLASS=UserFactory)
    data.update(fields)
    first_name = data.pop("first_name", "")
    last_name = data.pop("last_name", "")
    user = user_create(username=data["username"], email=data["email"], password=USER_PASSWORD, actor=SYSTEM)
    if first_name or last_name:
        user.first_name, user.last_name = first_name, last_name
        user.save(update_fields=["first_name", "last_name"])
    return user


def role_with(codenames: Iterable[str], **kwargs: Any):
    """A global role holding exactly these RBAC permissions (found again if one already does).
    Keywords are role_create's (a name, a client's own role); with any, the role is always new."""
    from accounts.models import Role
    from accounts.services import role_create

    wanted = sorted(set(codenames))
    name = "holds-" + hashlib.sha256(" ".join(wanted).encode()).hexdigest()[:12]
    if not kwargs:
        role = Role.objects.filter(name=name, application__isnull=True).first()
        if role is not None:
            return role
    return role_create(name=kwargs.pop("name", name), permissions=wanted, actor=SYSTEM, **kwargs)


def make_staff(
    *,
    permissions: Iterable[str] = (),
    model_permissions: Iterable[str] = (),
    superuser: bool = False,
    staff: bool = True,
    **fields: Any,
):
    """A staff member (``staff=False``: the same flags without is_staff). ``permissions``: RBAC
    codenames, granted through one global role holding exactly them. ``model_permissions``: Django
    model permissions as "app_label.codename", given to the user directly."""
    from django.contrib.auth.models import Permission as DjangoPermission
    from django.db.models import Q

    from accounts.services import role_grant

    user = make_user(**fields)
    user.is_staff, user.is_superuser = staff, superuser
    user.save(update_fields=["is_staff", "is_superuser"])
    permissions, model_permissions = list(permissions), sorted(set(model_permissions))
    if permissions:
        role_grant(role=role_with(permissions), user=user, actor=SYSTEM)
    if model_permissions:
        wanted = Q()
        for name in model_permissions:
            app_label, codename = name.split(".", 1)
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        found = list(DjangoPermission.objects.filter(wanted))
        assert len(found) == len(model_permissions), f"unknown model permission among {model_permissions}"
        user.user_permissions.set(found)
    return user


# --- Clients --------------------------------------------------------------------------------------


def make_client(**overrides: Any):
    """Register a client through the service; returns IssuedClient (with the raw secret). By
    default a confidential authorization-code client for openid, profile, email, offline_access."""
    from accounts.selectors import Caller
    from idp.oauth import clients

    options = {
        "name": f"Client {secrets.token_hex(4)}",
        "client_type": "confidential",
        "grant": "authorization_code",
        "redirect_uris": [REDIRECT_URI],
        "scopes": ["openid", "profile", "email", "offline_access"],
        "caller": Caller.operator(SYSTEM),
    }
    options.update(overrides)
    return clients.client_create(**options)


def make_public_client(**overrides: Any):
    """A public authorization-code client: no secret, so PKCE is its proof."""
    return make_client(**{"client_type": "public", **overrides})


def make_machine_client(**overrides: Any):
    """A machine client (client_credentials, no redirect URI), for scope profile unless told."""
    return make_client(**{"grant": "client_credentials", "redirect_uris": [], "scopes": ["profile"], **overrides})


def make_resource_server(**overrides: Any):
    """A confidential client that only introspects, as an API gateway would."""
    return make_machine_client(**{"scopes": [], "is_resource_server": True, **overrides})


# --- Signed in ------------------------------------------------------------------------------------


def relying_party(base_url: str, issued: Any, *, redirect_uri: str = REDIRECT_URI) -> RelyingParty:
    """The relying party of a registered client (IssuedClient), talking to a live server. Each has
    its own browser (cookie jar)."""
    return RelyingParty(
        base_url=base_url,
        client_id=issued.application.client_id,
        client_secret=issued.client_secret,
        redirect_uri=redirect_uri,
    )


def sign_in_at(rp: RelyingParty, user: Any, **kwargs: Any) -> AuthorizationResult:
    """The user signs in at the relying party: authorization request, the sign-in form with the
    user's password (unless the browser is signed in already), consent, and the redirect back.
    Keywords are RelyingParty.authorize's (scope, consent, pkce, prompt, ...). A user who must use
    a second factor (an administrator: idp-admin requires one) answers with an authenticator app's
    code (second_factor_for)."""
    kwargs.setdefault("second_factor", second_factor_for(user))
    return rp.authorize(username=user.username, password=USER_PASSWORD, **kwargs)


def tokens_at(rp: RelyingParty, user: Any, **kwargs: Any) -> dict[str, Any]:
    """sign_in_at, then the code exchanged for tokens: the token response."""
    return rp.exchange(sign_in_at(rp, user, **kwargs))


def signed_in_session(base_url: str, user: Any, *, password: str = USER_PASSWORD) -> requests.Session:
    """A browser (requests.Session) signed in through the real sign-in form of a live server: the
    page first, then the form posted back with its CSRF token."""
    session = requests.Session()
    page = session.get(f"{base_url}/accounts/login/", timeout=10)
    assert page.status_code == 200, page.status_code
    action, fields = parse_form(page.text)
    assert "csrfmiddlewaretoken" in fields, "the sign-in page carries a CSRF token"
    fields.update(username=user.username, password=password)
    reply = _post_back(session, page, action, fields)
    assert reply.status_code == 302, f"signed in: {reply.status_code} {reply.text[:200]}"
    code = second_factor_for(user)
    if code is not None and "/accounts/login/verify/" in reply.headers["Location"]:
        verify = session.get(urljoin(page.url, reply.headers["Location"]), timeout=10)
        action, fields = parse_form(verify.text)
        fields.update(method="totp", code=code())
        reply = _post_back(session, verify, action, fields)
        assert reply.status_code == 302, f"second factor: {reply.status_code} {reply.text[:200]}"
    return session


def _post_back(session: requests.Session, page: requests.Response, action: str | None, fields: dict) -> Any:
    """Post a page's form back, as a browser does (its Referer, no redirects followed)."""
    return session.post(
        urljoin(page.url, action or page.url),
        data=fields,
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=10,
    )


def signed_in_client(user: Any, *, client: Any = None, second_factor: bool = True, **client_options: Any):
    """Django's test client with the user's session (signing in is recorded, as any sign-in is).
    ``client``: sign in this one (pytest-django's ``client`` fixture) instead of a new one;
    ``second_factor``: the session signed in with a password and an authenticator app just now
    (as staff must, to reach Django admin: idp.admin_site), or with a password only;
    ``client_options``: Client's (enforce_csrf_checks=True, raise_request_exception=False, ...)."""
    from django.test import Client

    browser = client if client is not None else Client(**client_options)
    browser.force_login(user)
    session_authenticated(browser, amr=["pwd", "otp", "mfa"] if second_factor else ["pwd"])
    return browser


def session_authenticated(browser: Any, *, amr: list[str], seconds_ago: int = 0) -> None:
    """Record in a Django test client's session how its user authenticated (idp.mfa.signin)."""
    import time

    from idp.mfa.signin import AUTH_KEY

    session = browser.session
    session[AUTH_KEY] = {"amr": amr, "auth_time": time.time() - seconds_ago}
    session.save()


_TOTP_SEEDS: dict[int, bytes] = {}  # the seeds of the apps totp_device set up, by device id


def totp_device(user: Any, *, confirmed: bool = True):
    """An authenticator app set up for the user, as enrolment leaves it; returns (device, seed)."""
    from idp.mfa import totp
    from idp.models import TotpDevice

    seed = totp.seed_new()
    device = TotpDevice.objects.create(
        user=user, name="Authenticator app", confirmed=confirmed, secret_encrypted=totp.seed_encrypt(seed)
    )
    _TOTP_SEEDS[device.pk] = seed
    return device, seed


def second_factor_for(user: Any) -> Callable[[], str] | None:
    """Where a sign-in of this user gets its authenticator app's codes: the app totp_device set
    up, or a new one if the user must use a second factor and has none; None for a user who is
    asked for none. Each call gives the next code the app may use (a step after the last one
    accepted, within one step of now)."""
    from idp.mfa.levels import Level
    from idp.mfa.policy import level_required
    from idp.models import TotpDevice
    from tests.mfa.codes import totp_code

    device = TotpDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        if level_required(user=user, admin=user.is_staff) < Level.MFA:  # staff: for admin and the dashboard
            return None
        device, _seed = totp_device(user)
    seed = _TOTP_SEEDS.get(device.pk)
    if seed is None:
        return None

    def code() -> str:
        now = int(time.time() // 30)
        last = TotpDevice.objects.get(pk=device.pk).last_t
        if last + 1 > now + 1:
            # The three steps the provider accepts now are spent (three sign-ins within a step):
            # rather than wait for the clock, the app's history is forgotten, as if the codes had
            # been used half a minute ago.
            TotpDevice.objects.filter(pk=device.pk).update(last_t=now - 2)
            last = now - 2
        return totp_code(seed, at=max(now - 1, last + 1) * 30)

    return code


def post_sign_in_form(username: str, password: str, *, ip: str, client: Any = None):
    """One attempt at the real sign-in form through Django's test client, as a browser at that
    address makes it: the page for its CSRF token, then the form. Returns the answer to the post."""
    from django.test import Client
    from django.urls import reverse

    browser = client if client is not None else Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
    page = browser.get(reverse("login"), REMOTE_ADDR=ip)
    return browser.post(
        reverse("login"),
        {"username": username, "password": password, "csrfmiddlewaretoken": str(page.context["csrf_token"])},
        REMOTE_ADDR=ip,
    )
