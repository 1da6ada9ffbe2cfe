"""Django admin needs a second factor: its own password-only login form is replaced by ours, and a
staff session without a second factor is sent to the second step."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import make_staff, signed_in_client

pytestmark = pytest.mark.django_db


def test_admins_own_login_form_is_not_served(client):
    staff = make_staff(username="staffer")
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/?next=%2Fadmin%2F")
    # Posting a password to it signs nobody in.
    posted = client.post("/admin/login/?next=/admin/", {"username": staff.username, "password": "x"})
    assert posted.status_code == 302 and "_auth_user_id" not in client.session


def test_a_staff_session_with_a_password_alone_is_sent_to_the_second_step():
    staff = make_staff(username="staffer", superuser=True)
    browser = signed_in_client(staff, second_factor=False)
    reply = browser.get("/admin/", follow=True)
    assert reply.redirect_chain[-1][0].startswith("/accounts/login/enrol/?next=%2Fadmin%2F")
    assert signed_in_client(staff).get("/admin/").status_code == 200


def test_signing_in_for_admin_without_a_factor_leads_to_enrolment_not_to_admin():
    staff = make_staff(username="staffer", superuser=True)
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.9")
    page = browser.get("/accounts/login/?next=/admin/", REMOTE_ADDR="203.0.113.9")
    reply = browser.post(
        "/accounts/login/?next=/admin/",
        {
            "username": staff.username,
            "password": "correct horse battery staple",
            "next": "/admin/",
            "csrfmiddlewaretoken": str(page.context["csrf_token"]),
        },
        REMOTE_ADDR="203.0.113.9",
    )
    assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/enrol/")
    assert "_auth_user_id" not in browser.session  # not signed in until the factor
    assert browser.get("/admin/").status_code == 302
