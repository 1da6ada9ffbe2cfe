"""Account self-service through Django's test client on the real database, the mail tasks called
as functions (their mails in Django's outbox): password reset, password change, the e-mail address
and its verification, self-registration, and that none of them tells whether an address has an
account. The browser tests (a real worker, real mail files) are test_self_service_browser.py;
hostile input is test_self_service_hostile.py."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

import audit
from accounts.models import RoleAssignment, User
from accounts.tasks import (
    send_email_changed_notice,
    send_email_verification,
    send_password_reset,
    send_registration_notice,
)
from accounts.tokens import EmailVerificationTokenGenerator
from audit.models import AuditEvent
from tests.factories import USER_PASSWORD, make_user, signed_in_client, totp_device

ISSUER = "https://id.example.test"
NEW_PASSWORD = "a brand new passphrase 42"
LINK = re.compile(r"https?://\S+")


@pytest.fixture(autouse=True)
def _issuer_and_fast_hashing(settings):
    """Links are built from the issuer; Argon2 is slow by design and these tests are not about it."""
    settings.ISSUER = ISSUER
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


def actions_for(user: Any) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="user", target_id=str(user.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def link_in(message: Any) -> str:
    [link] = LINK.findall(message.body)
    return link


def path_of(link: str) -> str:
    assert link.startswith(ISSUER + "/"), link
    return urlsplit(link).path


def queued(callbacks: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The tasks the on-commit callbacks would enqueue (accounts.services._enqueue: partials of a
    task's delay), as (task name, kwargs), without sending anything to the broker."""
    return [
        (callback.func.__self__.name, callback.keywords)
        for callback in callbacks
        if isinstance(callback, functools.partial) and getattr(callback.func, "__name__", "") == "delay"
    ]


# --- Password reset ----------------------------------------------------------------------------------


def _reset_request(client: Client, email: str, capture: Any) -> tuple[Any, list[Any], int]:
    client.get("/accounts/password/reset/")
    with capture(execute=False) as callbacks, CaptureQueriesContext(connection) as queries:
        reply = client.post("/accounts/password/reset/", {"email": email})
    return reply, queued(callbacks), len(queries)


def test_a_reset_request_answers_and_works_the_same_whether_or_not_an_account_has_the_address(
    db, django_capture_on_commit_callbacks, mailoutbox
):
    user = make_user(email="known@example.com")
    known, known_tasks, known_queries = _reset_request(
        Client(), "Known@Example.com", django_capture_on_commit_callbacks
    )
    unknown, unknown_tasks, unknown_queries = _reset_request(
        Client(), "nobody@example.com", django_capture_on_commit_callbacks
    )
    # The same answer, and the same work: the request only enqueues the task, which looks up.
    assert (
        (known.status_code, known["Location"])
        == (unknown.status_code, unknown["Location"])
        == (
            302,
            "/accounts/password/reset/sent/",
        )
    )
    assert known_queries == unknown_queries
    assert [name for name, _ in known_tasks] == [name for name, _ in unknown_tasks] == [send_password_reset.name]
    assert not AuditEvent.objects.filter(action=audit.Action.PASSWORD_RESET_REQUESTED).exists()

    # The task mails the account, recorded; for the unknown address it sends and records nothing.
    assert send_password_reset(**unknown_tasks[0][1]) == 0
    assert send_password_reset(**known_tasks[0][1]) == 1
    [mail] = mailoutbox
    assert mail.to == ["known@example.com"]
    assert path_of(link_in(mail)).startswith("/accounts/password/reset/")
    assert actions_for(user)[-1] == "password.reset_requested"
    assert AuditEvent.objects.filter(action=audit.Action.PASSWORD_RESET_REQUESTED).count() == 1


def test_the_reset_link_comes_from_the_issuer_never_from_the_host_header(db, settings, mailoutbox):
    settings.ALLOWED_HOSTS = ["attacker.example", "testserver"]
    make_user(email="victim@example.com")
    client = Client(HTTP_HOST="attacker.example")
    client.post("/accounts/password/reset/", {"email": "victim@example.com"})
    send_password_reset(email="victim@example.com")
    link = link_in(mailoutbox[0])
    assert link.startswith(ISSUER + "/accounts/password/reset/")
    assert "attacker" not in mailoutbox[0].body


def _follow_reset_link(client: Client, path: str) -> Any:
    reply = client.get(path)
    assert reply.status_code == 302, reply.status_code  # the token moves into the session
    assert reply["Location"].endswith("/set-password/")
    return client.get(reply["Location"])


def test_a_reset_link_sets_the_password_once_signs_nobody_in_and_ends_every_session(db, mailoutbox):
    user = make_user()
    elsewhere = signed_in_client(user, second_factor=False)
    assert elsewhere.get("/dashboard/account/").status_code == 200
    send_password_reset(email=user.email)
    path = path_of(link_in(mailoutbox[0]))

    browser = Client()
    form = _follow_reset_link(browser, path)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    done = browser.post(form.wsgi_request.path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/done/"

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert "_auth_user_id" not in browser.session  # no sign-in: the user signs in again, factor included
    assert elsewhere.get("/dashboard/account/")["Location"].startswith("/accounts/login/")  # signed out
    changed = AuditEvent.objects.get(action="password.changed", target_id=str(user.pk))
    assert (changed.actor_id, changed.data) == (str(user.pk), {"via": "reset_link"})

    again = Client().get(path)  # the same link once more: its hash covered the old password
    assert again.status_code == 400
    assert b"This link is not valid" in again.content
    assert actions_for(user)[-1] == "password.reset_link_refused"


def test_an_expired_or_forged_reset_link_is_refused_and_recorded(db, settings):
    user = make_user()
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    old = PasswordResetTokenGenerator()
    old._now = lambda: datetime.now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)  # type: ignore[method-assign]
    for token in (old.make_token(user), "cf0c3t-0123456789abcdef0123456789abcdef"):
        reply = Client().get(f"/accounts/password/reset/{uid}/{token}/")
        assert reply.status_code == 400
        assert b"This link is not valid" in reply.content
    assert actions_for(user)[-2:] == ["password.reset_link_refused"] * 2
    before = user.password
    user.refresh_from_db()
    assert user.password == before


def test_a_reset_does_not_pass_the_second_factor(db, mailoutbox):
    user = make_user()
    totp_device(user)
    send_password_reset(email=user.email)
    browser = Client()
    form = _follow_reset_link(browser, path_of(link_in(mailoutbox[0])))
    browser.post(form.wsgi_request.path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    reply = browser.post("/accounts/login/", {"username": user.username, "password": NEW_PASSWORD})
    assert reply.status_code == 302
    assert reply["Location"].startswith("/accounts/login/verify/")  # the second step still follows
    assert "_auth_user_id" not in browser.session


# --- Password change ---------------------------------------------------------------------------------


def test_changing_the_password_needs_a_fresh_second_factor_when_the_user_has_one(db):
    user = make_user()
    totp_device(user)
    stale = signed_in_client(user, second_factor=False)
    reply = stale.post(
        "/dashboard/password/",
        {"old_password": USER_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/verify/")
    user.refresh_from_db()
    assert user.check_password(USER_PASSWORD)


def test_changing_the_password_keeps_this_session_and_ends_the_others(db):
    user = make_user()
    here = signed_in_client(user)
    elsewhere = signed_in_client(user)
    reply = here.post(
        "/dashboard/password/",
        {"old_password": USER_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert reply.status_code == 302 and reply["Location"] == "/dashboard/account/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert here.get("/dashboard/account/").status_code == 200
    assert elsewhere.get("/dashboard/account/")["Location"].startswith("/accounts/login/")
    assert "password.changed" in actions_for(user)


def test_wrong_current_passwords_count_toward_the_lockout(db, settings):
    user = make_user()
    here = signed_in_client(user)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        reply = here.post(
            "/dashboard/password/",
            {"old_password": "not it at all", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        )
        assert reply.status_code in (400, 429)
    # Locked out now: even the right password changes nothing (the form is no password oracle).
    reply = here.post(
        "/dashboard/password/",
        {"old_password": USER_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert reply.status_code in (400, 429)
    user.refresh_from_db()
    assert user.check_password(USER_PASSWORD)
    assert actions_for(user).count("login.failed") >= settings.AXES_FAILURE_LIMIT


def test_the_validators_refuse_a_weak_new_password(db):
    user = make_user()
    reply = signed_in_client(user).post(
        "/dashboard/password/", {"old_password": USER_PASSWORD, "new_password1": "123", "new_password2": "123"}
    )
    assert reply.status_code == 400
    assert b"too short" in reply.content
    user.refresh_from_db()
    assert user.check_password(USER_PASSWORD)


# --- The address and its verification ------------------------------------------------------------------


def test_a_new_user_with_an_address_is_mailed_its_verification_link(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        user = make_user()
    assert queued(callbacks) == [(send_email_verification.name, {"user_id": user.pk})]


def test_the_verification_link_verifies_once(db, mailoutbox):
    user = make_user()
    assert send_email_verification(user_id=user.pk) is True
    path = path_of(link_in(mailoutbox[0]))
    browser = Client()
    page = browser.get(path)  # a GET (a mail scanner) verifies nothing
    assert page.status_code == 200 and b"Verify my address" in page.content
    user.refresh_from_db()
    assert not user.email_verified
    assert browser.post(path).status_code == 200
    user.refresh_from_db()
    assert user.email_verified
    assert Client().post(path).status_code == 400  # used
    assert actions_for(user)[-2:] == ["email.verified", "email.verification_link_refused"]
    assert AuditEvent.objects.get(action="email.verified").actor_id == str(user.pk)
    assert send_email_verification(user_id=user.pk) is False  # verified: nothing to send


def test_changing_the_address_needs_the_password_and_unverifies_it_until_its_link(
    db, django_capture_on_commit_callbacks, mailoutbox
):
    user = make_user(email="old@example.com")
    User.objects.filter(pk=user.pk).update(email_verified=True)
    send_email_verification(user_id=user.pk)  # nothing: verified
    old_link = EmailVerificationTokenGenerator().make_token(user)
    client = signed_in_client(user)
    wrong = client.post("/dashboard/account/email/", {"email": "new@example.com", "password": "nope nope nope"})
    assert wrong.status_code == 400
    user.refresh_from_db()
    assert user.email == "old@example.com" and user.email_verified

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reply = client.post("/dashboard/account/email/", {"email": "new@example.com", "password": USER_PASSWORD})
    assert reply.status_code == 302
    user.refresh_from_db()
    assert (user.email, user.email_verified) == ("new@example.com", False)
    tasks = queued(callbacks)
    assert [name for name, _ in tasks] == [send_email_verification.name, send_email_changed_notice.name]
    for name, kwargs in tasks:
        {
            send_email_verification.name: send_email_verification,
            send_email_changed_notice.name: send_email_changed_notice,
        }[name](**kwargs)
    assert [mail.to for mail in mailoutbox] == [["new@example.com"], ["old@example.com"]]
    assert "new@example.com" not in mailoutbox[1].body  # the old address is told, not where it went
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    assert Client().post(f"/accounts/email/verify/{uid}/{old_link}/").status_code == 400
    assert Client().post(path_of(link_in(mailoutbox[0]))).status_code == 200
    user.refresh_from_db()
    assert user.email_verified
    assert {"email.changed", "email.verified"} <= set(actions_for(user))


def test_an_address_taken_by_another_account_is_refused(db):
    make_user(email="taken@example.com")
    user = make_user()
    reply = signed_in_client(user).post(
        "/dashboard/account/email/", {"email": "TAKEN@example.com", "password": USER_PASSWORD}
    )
    assert reply.status_code == 400
    assert b"already exists" in reply.content


def test_the_resend_button_is_rate_limited(db, settings, django_capture_on_commit_callbacks):
    settings.IDP_RATE_LIMITS = settings.IDP_RATE_LIMITS | {"resend.user": "2/hour"}
    client = signed_in_client(make_user())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answers = [client.post("/dashboard/account/email/resend/").status_code for _ in range(3)]
    assert answers == [302, 302, 429]
    assert len(callbacks) == 2


def test_an_operator_verifying_an_address_in_the_admin_is_recorded(db):
    from tests.factories import make_staff

    admin = make_staff(superuser=True)
    user = make_user()
    client = signed_in_client(admin)
    page = client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and not isinstance(value, list)}
    data.update(
        username=user.username,
        email=user.email,
        email_verified="on",
        date_joined_0=user.date_joined.strftime("%Y-%m-%d"),
        date_joined_1=user.date_joined.strftime("%H:%M:%S"),
        is_active="on",
    )
    for prefix in ("assignments", "roleassignment_set", "user_assignments"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    for formset in page.context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    data = {key: value for key, value in data.items() if key not in {"password", "last_login", "date_joined"}}
    reply = client.post(f"/admin/accounts/user/{user.pk}/change/", data)
    assert reply.status_code == 302, reply.context["adminform"].form.errors if reply.context else reply
    user.refresh_from_db()
    assert user.email_verified
    event = AuditEvent.objects.get(action="email.verified", target_id=str(user.pk))
    assert (event.actor_type, event.actor_id, event.data) == ("user", str(admin.pk), {"via": "operator"})


# --- Self-registration -----------------------------------------------------------------------------------


def test_registration_is_a_404_when_off(db, settings):
    settings.SELF_REGISTRATION = False
    assert Client().get("/accounts/register/").status_code == 404
    assert Client().post("/accounts/register/", {"username": "x"}).status_code == 404
    assert b"Create an account" not in Client().get("/accounts/login/").content


def _register(email: str, username: str, capture: Any) -> tuple[Any, list[Any]]:
    fields = {"username": username, "email": email, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    with capture(execute=False) as callbacks:
        reply = Client().post("/accounts/register/", fields)
    return reply, queued(callbacks)


def test_registration_answers_the_same_for_a_known_address_and_mails_its_owner_instead(
    db, settings, django_capture_on_commit_callbacks, mailoutbox
):
    settings.SELF_REGISTRATION = True
    assert b"Create an account" in Client().get("/accounts/login/").content
    owner = make_user(email="owner@example.com")
    fresh, fresh_tasks = _register("someone@example.com", "someone", django_capture_on_commit_callbacks)
    known, known_tasks = _register("Owner@example.com", "another", django_capture_on_commit_callbacks)
    assert (
        (fresh.status_code, fresh["Location"])
        == (known.status_code, known["Location"])
        == (302, "/accounts/register/sent/")
    )

    created = User.objects.get(username="someone")
    assert created.is_self_registered and not created.email_verified
    assert not RoleAssignment.objects.filter(user=created).exists()  # least privilege: no role
    assert not User.objects.filter(username="another").exists()
    assert fresh_tasks == [(send_email_verification.name, {"user_id": created.pk})]
    assert known_tasks == [(send_registration_notice.name, {"email": "Owner@example.com"})]
    send_registration_notice(**known_tasks[0][1])
    assert mailoutbox[0].to == [owner.email]
    assert {"user.created", "user.registered"} <= set(actions_for(created))


def test_a_taken_username_is_refused_whatever_the_address(db, settings, django_capture_on_commit_callbacks):
    settings.SELF_REGISTRATION = True
    make_user(username="taken", email="owner@example.com")
    for email in ("owner@example.com", "new@example.com"):  # the refusal does not depend on the address
        reply, tasks = _register(email, "taken", django_capture_on_commit_callbacks)
        assert reply.status_code == 400 and b"already exists" in reply.content
        assert tasks == []
