"""No action hands its caller a credential carrying more than the caller holds: client secrets
(management API and Django admin), machine clients' API keys (the dashboard), and the built-in
idp-admin role, which can be neither emptied nor deleted, nor left without a holder.

Every path runs over HTTP against the live server: tokens from the provider for the API, the real
sign-in form and CSRF tokens for the admin and the dashboard."""

from __future__ import annotations

import re

import pytest
import requests
from django.urls import reverse

from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Role, RoleAssignment
from accounts.selectors import Caller
from accounts.services import role_create, role_grant
from apikeys.models import ApiKey
from apikeys.services import apikey_create
from audit.models import AuditEvent
from idp.models import Application
from tests.accounts.test_admin import Browser, read_form
from tests.api.conftest import ALL_PERMISSIONS, SYSTEM, error_of, role_with, unique
from tests.factories import make_client, make_user

CLIENTS_ADMIN = ["idp.clients.read", "idp.clients.manage"]


def secret_of(application: Application) -> str:
    return Application.objects.values_list("client_secret", flat=True).get(pk=application.pk)


def rotations_of(application: Application) -> int:
    return AuditEvent.objects.filter(action="client.secret_rotated", client_id=application.client_id).count()


@pytest.fixture
def clients_admin(user_subject):
    subject = user_subject()
    subject.hold(CLIENTS_ADMIN)
    subject.api()
    return subject


@pytest.fixture
def privileged_machine(management):
    """A machine client whose service account holds idp-admin: its secret is an administrator."""
    issued = make_client(grant="client_credentials", redirect_uris=[], scopes=["idp.manage"])
    role_grant(role=management, client=issued.application, actor=SYSTEM)
    return issued


# --- 1. Client secrets through the management API -------------------------------------------------


def test_rotating_the_secret_of_a_client_holding_more_than_the_caller_is_refused(clients_admin, privileged_machine):
    application = privileged_machine.application
    before = secret_of(application)

    reply = clients_admin.api().post(
        f"/clients/{application.client_id}/rotate-secret/", {"grace_seconds": 30 * 24 * 3600}
    )

    assert reply.status_code == 403, reply.text
    assert error_of(reply) == "access_denied"
    assert "client_secret" not in reply.text
    assert secret_of(application) == before
    assert rotations_of(application) == 0
    # The real client noticed nothing, and the attacker holds no credential of it.
    token = requests.post(
        f"{clients_admin.live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "idp.manage"},
        auth=(application.client_id, privileged_machine.client_secret),
        timeout=10,
    )
    assert token.status_code == 200


def test_a_client_role_the_caller_does_not_hold_blocks_the_rotation_too(clients_admin, management):
    issued = make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"])
    own = role_create(
        name="billing-superuser", application=issued.application, permissions=["billing.all"], actor=SYSTEM
    )
    role_grant(role=own, client=issued.application, actor=SYSTEM)

    reply = clients_admin.api().post(f"/clients/{issued.application.client_id}/rotate-secret/", {"grace_seconds": 0})

    assert reply.status_code == 403, reply.text
    assert rotations_of(issued.application) == 0


def test_a_client_registered_for_idp_manage_needs_every_management_permission_to_rotate(clients_admin, db):
    console = make_client(scopes=["openid", "idp.manage"])
    reply = clients_admin.api().post(f"/clients/{console.application.client_id}/rotate-secret/", {"grace_seconds": 0})
    assert reply.status_code == 403, reply.text
    assert rotations_of(console.application) == 0


def test_a_caller_holding_everything_the_client_carries_may_rotate(user_subject, privileged_machine, management):
    holder = user_subject()
    holder.hold(ALL_PERMISSIONS)
    role_grant(role=management, user=holder.holder["user"], actor=SYSTEM)
    application = privileged_machine.application

    reply = holder.api().post(f"/clients/{application.client_id}/rotate-secret/", {"grace_seconds": 0})

    assert reply.status_code == 200, reply.text
    assert reply.json()["client_secret"]
    assert rotations_of(application) == 1


def test_a_client_holding_nothing_is_rotated_by_a_clients_administrator(clients_admin, db):
    plain = make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"])
    reply = clients_admin.api().post(f"/clients/{plain.application.client_id}/rotate-secret/", {"grace_seconds": 0})
    assert reply.status_code == 200, reply.text


def test_registering_an_idp_manage_client_follows_the_same_rule(clients_admin):
    before = Application.objects.count()
    reply = clients_admin.api().post(
        "/clients/",
        {"name": "sneaky", "client_type": "confidential", "grant": "client_credentials", "scopes": ["idp.manage"]},
    )
    assert reply.status_code == 403, reply.text
    assert error_of(reply) == "access_denied"
    assert Application.objects.count() == before


# --- 1. Client secrets in Django admin --------------------------------------------------------------


def admin_browser(live_server, *, superuser: bool, django_permissions: list[str] = ()) -> Browser:
    from django.contrib.auth.models import Permission as DjangoPermission

    user = make_user(username=unique("staff"))
    user.is_staff = True
    user.is_superuser = superuser
    user.save(update_fields=["is_staff", "is_superuser"])
    for codename in django_permissions:
        user.user_permissions.add(DjangoPermission.objects.get(codename=codename))
    browser = Browser(live_server.url)
    reply = browser.sign_in(reverse("admin:login") + "?next=/admin/", "login-form", user.username)
    assert reply.status_code == 302, reply.text[:500]
    browser.user = user
    return browser


def reset_secret(browser: Browser, application: Application) -> requests.Response:
    changelist = reverse("admin:idp_application_changelist")
    return browser.submit(
        changelist,
        "changelist-form",
        {"action": "reset_client_secret", "_selected_action": str(application.pk), "index": "0"},
    )


def test_staff_without_the_clients_roles_cannot_reset_its_secret_in_admin(live_server, privileged_machine):
    browser = admin_browser(live_server, superuser=False, django_permissions=["view_application", "change_application"])
    application = privileged_machine.application
    before = secret_of(application)

    reply = reset_secret(browser, application)

    assert 'id="client-secret"' not in reply.text
    assert secret_of(application) == before
    assert rotations_of(application) == 0


def test_a_superuser_may_reset_any_secret_in_admin(live_server, privileged_machine):
    browser = admin_browser(live_server, superuser=True)
    reply = reset_secret(browser, privileged_machine.application)
    assert reply.status_code == 200
    assert re.search(r'<code id="client-secret">[^<]+</code>', reply.text)
    assert rotations_of(privileged_machine.application) == 1


def test_staff_cannot_make_themselves_superuser_or_join_a_group_in_admin(live_server, management):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name=unique("admins"))
    role_grant(role=management, group=group, actor=SYSTEM)
    browser = admin_browser(live_server, superuser=False, django_permissions=["view_user", "change_user"])
    page = reverse("admin:accounts_user_change", args=[browser.user.pk])

    browser.submit(page, "user_form", {"is_superuser": "on", "groups": str(group.pk), "_save": ""})

    browser.user.refresh_from_db()
    assert not browser.user.is_superuser
    assert not browser.user.groups.exists()


def test_staff_cannot_grant_themselves_a_role_in_admin(live_server, management):
    browser = admin_browser(
        live_server, superuser=False, django_permissions=["view_roleassignment", "add_roleassignment"]
    )
    browser.submit(
        reverse("admin:accounts_roleassignment_add"),
        "roleassignment_form",
        {"role": str(management.pk), "user": str(browser.user.pk), "_save": ""},
    )
    assert not RoleAssignment.objects.filter(role=management, user=browser.user).exists()


# --- 2. Machine keys on the dashboard ---------------------------------------------------------------


def dashboard_browser(live_server, user) -> Browser:
    browser = Browser(live_server.url)
    reply = browser.sign_in(reverse("login"), None, user.username)
    assert reply.status_code == 302, reply.text[:500]
    browser.user = user
    return browser


def post_action(browser: Browser, path: str) -> requests.Response:
    """A POST with the CSRF token of the dashboard's list page, as its buttons send."""
    page = browser.get(reverse("apikeys:list"))
    token = browser.session.cookies.get("idp_csrf")
    return browser.session.post(
        browser.base_url + path,
        data={"csrfmiddlewaretoken": token},
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=10,
    )


@pytest.fixture
def machine_key(privileged_machine, management):
    return apikey_create(
        name="billing-sync",
        caller=Caller.operator(SYSTEM),
        application=privileged_machine.application,
        scopes=["idp.manage"],
        role_ids=[management.pk],
    )


def staff_user(*codenames: str):
    user = make_user(username=unique("staff"))
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    if codenames:
        role_grant(role=role_with(codenames), user=user, actor=SYSTEM)
    return user


def test_staff_status_alone_cannot_rotate_a_machine_key(live_server, machine_key):
    browser = dashboard_browser(live_server, staff_user())
    reply = post_action(browser, reverse("apikeys:rotate", args=[machine_key.key.pk]))
    assert reply.status_code in (403, 404), reply.status_code
    assert "idpk_" not in reply.text
    assert not ApiKey.objects.filter(rotated_from=machine_key.key).exists()


def test_the_keys_permission_without_the_keys_roles_cannot_rotate_it(live_server, machine_key):
    browser = dashboard_browser(live_server, staff_user("idp.apikeys.manage"))
    reply = post_action(browser, reverse("apikeys:rotate", args=[machine_key.key.pk]))
    assert reply.status_code == 403, reply.status_code
    assert "idpk_" not in reply.text
    assert not ApiKey.objects.filter(rotated_from=machine_key.key).exists()


def test_the_keys_permission_and_its_roles_rotate_a_machine_key(live_server, machine_key, management):
    user = staff_user("idp.apikeys.manage")
    role_grant(role=management, user=user, actor=SYSTEM)
    browser = dashboard_browser(live_server, user)
    reply = post_action(browser, reverse("apikeys:rotate", args=[machine_key.key.pk]))
    assert reply.status_code == 200, reply.status_code
    assert re.search(r"idpk_[0-9A-Za-z]{12}_", reply.text)
    assert ApiKey.objects.filter(rotated_from=machine_key.key).exists()


def test_staff_status_alone_shows_no_other_principals_keys(live_server, machine_key):
    browser = dashboard_browser(live_server, staff_user())
    page = browser.get(reverse("apikeys:list"))
    assert page.status_code == 200
    assert machine_key.key.public_id not in page.text


# --- 3. The built-in idp-admin role ----------------------------------------------------------------


@pytest.fixture
def sole_admin(user_subject, management):
    """A user holding idp-admin, and nobody else holding the management permissions."""
    subject = user_subject()
    role_grant(role=management, user=subject.holder["user"], actor=SYSTEM)
    subject.api()
    return subject


def test_the_admin_role_cannot_be_deleted(user_subject, sole_admin, management):
    other = user_subject()
    other.hold(ALL_PERMISSIONS)  # every management permission, through a role of its own
    reply = other.api().delete(f"/roles/{management.pk}/")
    assert reply.status_code == 403, reply.text
    assert Role.objects.filter(pk=management.pk).exists()


@pytest.mark.parametrize("kept", [[], ["idp.users.read"], sorted(set(MANAGEMENT_PERMISSIONS) - {"audit.read"})])
def test_the_admin_role_cannot_be_emptied(sole_admin, management, kept):
    reply = sole_admin.api().patch(f"/roles/{management.pk}/", {"permissions": kept})
    assert reply.status_code == 403, reply.text
    held = set(management.permissions.values_list("codename", flat=True))
    assert held >= set(MANAGEMENT_PERMISSIONS)


def test_the_last_administrator_cannot_lose_the_role_in_admin(live_server, sole_admin, management):
    """A superuser of Django admin is no holder of the management API's permissions: taking
    idp-admin from its last holder would leave nobody able to administer through the API."""
    browser = admin_browser(live_server, superuser=True)
    assignment = RoleAssignment.objects.get(role=management, user=sole_admin.holder["user"])
    browser.submit(reverse("admin:accounts_roleassignment_delete", args=[assignment.pk]), None, {"post": "yes"})
    assert RoleAssignment.objects.filter(pk=assignment.pk).exists()


def test_the_last_administrator_cannot_be_deactivated_in_admin(live_server, sole_admin):
    browser = admin_browser(live_server, superuser=True)
    user = sole_admin.holder["user"]
    page = reverse("admin:accounts_user_change", args=[user.pk])
    fields = dict(read_form(browser.get(page).text, "user_form"))
    assert fields.get("is_active") == "on"
    changes = {name: value for name, value in fields.items() if name != "is_active"}
    browser.session.post(
        browser.base_url + page, data={**changes, "_save": ""}, headers={"Referer": page}, allow_redirects=False
    )
    user.refresh_from_db()
    assert user.is_active


def test_a_client_holding_more_than_the_caller_cannot_be_disabled(clients_admin, privileged_machine):
    application = privileged_machine.application
    reply = clients_admin.api().post(f"/clients/{application.client_id}/disable/", {})
    assert reply.status_code == 403, reply.text
    application.refresh_from_db()
    assert application.is_active


def test_a_change_that_leaves_another_administrator_is_allowed(user_subject, sole_admin, management):
    other = user_subject()
    role_grant(role=management, user=other.holder["user"], actor=SYSTEM)
    assignment = RoleAssignment.objects.get(role=management, user=sole_admin.holder["user"])
    reply = other.api().delete(f"/role-assignments/{assignment.pk}/")
    assert reply.status_code == 204, reply.text


def test_the_admin_role_cannot_be_deleted_in_admin(live_server, management):
    browser = admin_browser(live_server, superuser=True)
    browser.submit(reverse("admin:accounts_role_delete", args=[management.pk]), None, {"post": "yes"})
    assert Role.objects.filter(name=ADMIN_ROLE, application__isnull=True).exists()
    assert set(management.permissions.values_list("codename", flat=True)) >= set(MANAGEMENT_PERMISSIONS)
