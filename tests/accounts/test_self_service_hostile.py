"""Hostile input on every self-service form and link: the password reset request and its links,
the new-password form, the password change, the e-mail change, the resend button, the verification
links and the registration form. Each is refused with a clear 4xx, never a 5xx or a trace, and
nothing changes (no password, no address, no user, no mail enqueued)."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import User
from accounts.tokens import password_reset_token
from audit.models import AuditEvent
from tests.factories import USER_PASSWORD, make_user, signed_in_client
from tests.hostile import INTERNALS, VALUES

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]
    settings.SELF_REGISTRATION = True


def state(user: Any) -> tuple[Any, ...]:
    user.refresh_from_db()
    return (user.password, user.email, user.email_verified, User.objects.count())


def tasks_of(callbacks: list[Any]) -> list[Any]:
    return [callback for callback in callbacks if isinstance(callback, functools.partial)]


def refused(reply: Any, *codes: int) -> None:
    assert reply.status_code in (codes or (400,)), (reply.status_code, reply.content[:300])
    body = reply.content.decode(errors="replace")
    assert not any(internal in body for internal in INTERNALS), body[:300]


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_hostile_values_in_every_self_service_form_change_nothing(db, kind, django_capture_on_commit_callbacks):
    value = VALUES[kind]
    user = make_user()
    client = signed_in_client(user)
    before = state(user)
    forms = [
        (Client(), "/accounts/password/reset/", {"email": value}),
        (client, "/dashboard/password/", {"old_password": value, "new_password1": value, "new_password2": value}),
        # (Most of these values would be acceptable, if odd, passwords: the second one differs.)
        (
            client,
            "/dashboard/password/",
            {"old_password": USER_PASSWORD, "new_password1": value, "new_password2": value + "#"},
        ),
        (client, "/dashboard/account/email/", {"email": value, "password": USER_PASSWORD}),
        (client, "/dashboard/account/email/", {"email": "fine@example.com", "password": value}),
        (Client(), "/accounts/register/", {"username": value, "email": value, "password1": value, "password2": value}),
        (
            Client(),
            "/accounts/register/",
            {"username": value, "email": "new@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        ),
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for browser, path, fields in forms:
            refused(browser.post(path, fields), 400, 429)
    assert state(user) == before
    assert tasks_of(callbacks) == []


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_hostile_reset_and_verification_links_are_refused_and_recorded(db, kind):
    user = make_user()
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    value = quote(VALUES[kind] or "x", safe="")
    before = state(user)
    for path in (
        f"/accounts/password/reset/{uid}/{value}/",
        f"/accounts/password/reset/{value}/{password_reset_token.make_token(user)}/",
        f"/accounts/email/verify/{uid}/{value}/",
        f"/accounts/email/verify/{value}/{value}/",
    ):
        for method in ("get", "post"):
            refused(getattr(Client(), method)(path, {"new_password1": NEW_PASSWORD}), 400, 404)
    assert state(user) == before
    assert not AuditEvent.objects.filter(action__in=["password.changed", "email.verified"]).exists()


def test_a_reset_link_of_one_user_does_not_reset_another(db):
    alice, mallory = make_user(), make_user()
    token = password_reset_token.make_token(mallory)
    uid = urlsafe_base64_encode(force_bytes(alice.pk))
    before = state(alice)
    refused(Client().get(f"/accounts/password/reset/{uid}/{token}/"))
    assert state(alice) == before
    assert AuditEvent.objects.filter(action="password.reset_link_refused", target_id=str(alice.pk)).exists()


def test_hostile_new_passwords_on_a_valid_reset_link_change_nothing(db):
    user = make_user()
    browser = Client()
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    form_at = browser.get(f"/accounts/password/reset/{uid}/{password_reset_token.make_token(user)}/")["Location"]
    before = state(user)
    # Refused: too long for the field, NUL, empty, too short for the validators.
    for value in (VALUES["10kb"], "x" * 100_000, VALUES["nul"] * 3, VALUES["empty"], "short"):
        refused(browser.post(form_at, {"new_password1": value, "new_password2": value}))
    differing = browser.post(form_at, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD + "!"})
    refused(differing)
    assert state(user) == before


def test_every_self_service_form_refuses_a_post_without_its_csrf_token(db):
    user = make_user()
    signed_in = signed_in_client(user, enforce_csrf_checks=True)
    anonymous = Client(enforce_csrf_checks=True)
    before = state(user)
    for browser, path, fields in (
        (anonymous, "/accounts/password/reset/", {"email": user.email}),
        (signed_in, "/dashboard/password/", {"old_password": USER_PASSWORD, "new_password1": NEW_PASSWORD}),
        (signed_in, "/dashboard/account/email/", {"email": "new@example.com", "password": USER_PASSWORD}),
        (signed_in, "/dashboard/account/email/resend/", {}),
        (anonymous, "/accounts/register/", {"username": "x", "email": "x@example.com"}),
    ):
        refused(browser.post(path, fields), 403)
    assert state(user) == before


def test_wrong_methods_are_refused(db):
    client = signed_in_client(make_user())
    for method, path in (
        ("get", "/dashboard/account/email/"),
        ("get", "/dashboard/account/email/resend/"),
        ("put", "/dashboard/password/"),
        ("delete", "/accounts/register/"),
        ("put", "/accounts/password/reset/"),
    ):
        refused(getattr(client, method)(path), 405)


def test_the_account_pages_need_a_signed_in_user(db):
    for path in ("/dashboard/account/", "/dashboard/password/"):
        reply = Client().get(path)
        assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/")
    reply = Client().post("/dashboard/account/email/", {"email": "x@example.com", "password": "x"})
    assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/")


def test_reset_requests_are_limited_per_address_whatever_the_client_address(db, settings):
    settings.IDP_RATE_LIMITS = settings.IDP_RATE_LIMITS | {"reset.address": "2/hour"}
    answers = [
        Client(REMOTE_ADDR=f"203.0.113.{n}").post("/accounts/password/reset/", {"email": "Someone@example.com"})
        for n in range(3)
    ]
    assert [reply.status_code for reply in answers] == [302, 302, 429]
    assert answers[2]["Retry-After"]
