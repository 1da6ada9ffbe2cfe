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

from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Permission, Role, RoleAssignment
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


def test_registering_a_client_that_skips_consent_needs_reading_users(clients_admin):
    """A client that skips consent reads every signing-in user's profile without asking."""
    before = Application.objects.count()
    reply = clients_admin.api().post(
        "/clients/",
        {
            "name": "silent",
            "client_type": "confidential",
            "grant": "authorization_code",
            "redirect_uris": ["https://rp.example/cb"],
            "scopes": ["openid", "profile"],
            "skip_consent": True,
        },
    )
    assert reply.status_code == 403, reply.text
    assert Application.objects.count() == before


# --- 1. Client secrets in Django admin --------------------------------------------------------------


def admin_browser(live_server, *, superuser: bool, django_permissions: list[str] = ()) -> Browser:
    from django.contrib.auth.models import Permission as DjangoPermission

    user = make_user(username=unique("staff"))
    user.is_staff = True
    user.is_superuser = superuser
    user.save(update_fields=["is_staff", "is_superuser"])
    for name in django_permissions:  # a codename, or "app_label.codename" where two apps share it
        app_label, _, codename = name.rpartition(".")
        found = DjangoPermission.objects.filter(codename=codename)
        user.user_permissions.add(found.get(content_type__app_label=app_label) if app_label else found.get())
    browser = Browser(live_server.url)
    reply = browser.sign_in_to_admin(user)
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


def post_admin(browser: Browser, path: str, data: dict[str, str]) -> requests.Response:
    """A POST as a browser would send it, for a page the staff member may not even load."""
    referer = browser.base_url + reverse("admin:index")
    browser.get(reverse("admin:index"))  # the CSRF cookie
    token = browser.session.cookies.get("idp_csrf")
    return browser.session.post(
        browser.base_url + path,
        data={"csrfmiddlewaretoken": token, **data},
        headers={"Referer": referer},
        allow_redirects=False,
        timeout=10,
    )


# --- 1. Users in Django admin ------------------------------------------------------------------------

NEW_PASSWORD = "a brand new passphrase 77"


@pytest.fixture
def user_targets(management):
    """Users a staff member holding nothing might go after, by kind."""
    superuser = make_user(username=unique("root"))
    superuser.is_staff = superuser.is_superuser = True
    superuser.save(update_fields=["is_staff", "is_superuser"])
    administrator = make_user(username=unique("admin"))
    role_grant(role=management, user=administrator, actor=SYSTEM)
    other_staff = make_user(username=unique("staff"))
    other_staff.is_staff = True
    other_staff.save(update_fields=["is_staff"])
    reporter = make_user(username=unique("reporter"))
    role_grant(role=role_with(["reports.read"]), user=reporter, actor=SYSTEM)
    return {
        "superuser": superuser,
        "administrator": administrator,
        "staff": other_staff,
        "holding a role the caller lacks": reporter,
        "plain": make_user(username=unique("plain")),
    }


REFUSED_TARGETS = ["superuser", "administrator", "staff", "holding a role the caller lacks"]


@pytest.mark.parametrize("target", [*REFUSED_TARGETS, "plain"])
def test_staff_reset_only_the_password_of_users_holding_no_more_than_them(live_server, user_targets, target):
    browser = admin_browser(live_server, superuser=False, django_permissions=["view_user", "change_user"])
    user = user_targets[target]
    page = reverse("admin:auth_user_password_change", args=[user.pk])

    reply = post_admin(browser, page, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})

    user.refresh_from_db()
    if target == "plain":
        assert reply.status_code == 302, reply.status_code
        assert user.check_password(NEW_PASSWORD)
    else:
        assert reply.status_code == 403, reply.status_code
        assert not user.check_password(NEW_PASSWORD)


@pytest.mark.parametrize("target", REFUSED_TARGETS)
def test_staff_cannot_change_or_delete_users_holding_more_than_them(live_server, user_targets, target):
    browser = admin_browser(
        live_server, superuser=False, django_permissions=["view_user", "change_user", "delete_user"]
    )
    user = user_targets[target]

    changed = browser.submit(
        reverse("admin:accounts_user_change", args=[user.pk]),
        "user_form",
        {"username": user.username, "email": "attacker@example.com", "_save": ""},
    )
    deleted = post_admin(browser, reverse("admin:accounts_user_delete", args=[user.pk]), {"post": "yes"})
    bulk = post_admin(
        browser,
        reverse("admin:accounts_user_changelist"),
        {"action": "delete_selected", "_selected_action": str(user.pk), "post": "yes"},
    )

    assert (changed.status_code, deleted.status_code) == (403, 403)
    assert bulk.status_code in (200, 403), bulk.status_code
    user.refresh_from_db()
    assert user.email != "attacker@example.com"


def test_a_superuser_still_changes_anyone(live_server, user_targets):
    browser = admin_browser(live_server, superuser=True)
    user = user_targets["administrator"]
    page = reverse("admin:auth_user_password_change", args=[user.pk])
    reply = post_admin(browser, page, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert reply.status_code == 302, reply.status_code
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


# --- 1. Clients in Django admin ----------------------------------------------------------------------


def scopes_of(application: Application) -> str:
    return Application.objects.values_list("allowed_scopes", flat=True).get(pk=application.pk)


@pytest.fixture
def clients_staff(live_server, management):
    """Staff who may change and delete clients in admin and hold the clients' permissions, no more."""
    browser = admin_browser(
        live_server,
        superuser=False,
        django_permissions=["view_application", "change_application", "delete_application"],
    )
    role_grant(role=role_with(CLIENTS_ADMIN), user=browser.user, actor=SYSTEM)
    return browser


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"allowed_scopes": "openid profile idp.manage"}, "idp.manage carries every management permission"),
        ({"is_resource_server": "on"}, "introspection reads users and roles"),
        ({"skip_authorization": "on"}, "skipping consent reads profiles without asking"),
    ],
)
def test_staff_cannot_make_a_client_carry_more_than_they_hold(clients_staff, changes, why):
    application = make_client(scopes=["openid", "profile"]).application
    page = reverse("admin:idp_application_change", args=[application.pk])

    reply = clients_staff.submit(page, "application_form", {**changes, "_save": ""})

    assert reply.status_code == 403, (why, reply.status_code)
    application.refresh_from_db()
    assert scopes_of(application) == "openid profile"
    assert not application.is_resource_server
    assert not application.skip_authorization


def test_staff_may_change_a_client_carrying_nothing_more_than_they_hold(clients_staff):
    application = make_client(scopes=["openid", "profile"]).application
    page = reverse("admin:idp_application_change", args=[application.pk])
    reply = clients_staff.submit(page, "application_form", {"name": "renamed", "_save": ""})
    assert reply.status_code == 302, reply.status_code
    application.refresh_from_db()
    assert application.name == "renamed"


def test_staff_cannot_reroute_or_delete_a_client_carrying_more_than_they_hold(clients_staff):
    """Made public with the attacker's redirect URI, a skip-consent idp.manage client would hand
    them an administrator's code."""
    console = make_client(scopes=["openid", "idp.manage"], skip_consent=True).application
    page = reverse("admin:idp_application_change", args=[console.pk])
    redirects = f"{console.redirect_uris} https://attacker.example/cb"

    changed = clients_staff.submit(
        page, "application_form", {"client_type": "public", "redirect_uris": redirects, "_save": ""}
    )
    deleted = post_admin(clients_staff, reverse("admin:idp_application_delete", args=[console.pk]), {"post": "yes"})

    assert (changed.status_code, deleted.status_code) == (403, 403)
    console.refresh_from_db()
    assert console.client_type == "confidential"
    assert "attacker" not in console.redirect_uris


def test_the_last_administrator_client_can_be_neither_switched_off_nor_deleted_in_admin(
    live_server, privileged_machine
):
    browser = admin_browser(live_server, superuser=True)
    application = privileged_machine.application
    page = reverse("admin:idp_application_change", args=[application.pk])
    fields = dict(read_form(browser.get(page).text, "application_form"))
    assert fields.get("is_active") == "on"

    switched_off = post_admin(browser, page, {**{k: v for k, v in fields.items() if k != "is_active"}, "_save": ""})
    deleted = post_admin(browser, reverse("admin:idp_application_delete", args=[application.pk]), {"post": "yes"})

    assert (switched_off.status_code, deleted.status_code) == (403, 403)
    application.refresh_from_db()
    assert application.is_active


# --- 2. Machine keys on the dashboard ---------------------------------------------------------------


def dashboard_browser(live_server, user) -> Browser:
    browser = Browser(live_server.url)
    if user.is_staff:  # staff use the dashboard with a second factor, as Django admin
        reply = browser.sign_in_to_admin(user)
    else:
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


@pytest.mark.parametrize("codename", sorted(MANAGEMENT_PERMISSIONS))
def test_a_management_permission_cannot_be_deleted_in_admin(live_server, sole_admin, codename):
    browser = admin_browser(live_server, superuser=True)
    permission = Permission.objects.get(codename=codename)

    reply = post_admin(browser, reverse("admin:accounts_permission_delete", args=[permission.pk]), {"post": "yes"})

    assert reply.status_code == 403, reply.status_code
    assert Permission.objects.filter(codename=codename).exists()


@pytest.mark.parametrize("holds", [False, True])
def test_staff_delete_only_a_permission_they_hold(live_server, management, holds):
    browser = admin_browser(
        live_server, superuser=False, django_permissions=["accounts.view_permission", "accounts.delete_permission"]
    )
    held = role_with(["reports.read"])  # the permission, held by a role
    if holds:
        role_grant(role=held, user=browser.user, actor=SYSTEM)
    permission = Permission.objects.get(codename="reports.read")

    reply = post_admin(browser, reverse("admin:accounts_permission_delete", args=[permission.pk]), {"post": "yes"})

    assert reply.status_code == (302 if holds else 403), reply.status_code
    assert Permission.objects.filter(pk=permission.pk).exists() is not holds


# --- Tokens are issued by the protocol, never written in admin ----------------------------------


@pytest.mark.parametrize("model", ["accesstoken", "refreshtoken", "grant", "idtoken"])
def test_staff_cannot_add_or_rewrite_tokens_in_admin(live_server, signing_key, model):
    """A token row names whom it acts for: a staff member allowed to edit one could point their
    own token at an administrator. Tokens and codes come from the protocol; admin lists them and
    revokes them, nothing else."""
    from django.contrib.auth.models import Permission as DjangoPermission

    from idp.models import AccessToken, Grant, IDToken, RefreshToken
    from tests.conftest import REDIRECT_URI
    from tests.relying_party import RelyingParty

    issued = make_client(redirect_uris=[REDIRECT_URI])
    rp = RelyingParty(live_server.url, issued.application.client_id, issued.client_secret, REDIRECT_URI)
    staff = make_user(username=unique("tokenstaff"))
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    for action in ("view", "add", "change", "delete"):
        staff.user_permissions.add(DjangoPermission.objects.get(codename=f"{action}_{model}"))
    result = rp.authorize(
        username=staff.username, password="correct horse battery staple", scope="openid offline_access"
    )
    rp.exchange(result)
    victim = make_user(username=unique("victim"))
    row = {"accesstoken": AccessToken, "refreshtoken": RefreshToken, "grant": Grant, "idtoken": IDToken}[
        model
    ].objects.get()

    browser = admin_browser_for(live_server, staff)
    assert browser.get(reverse(f"admin:idp_{model}_add")).status_code == 403
    change = reverse(f"admin:idp_{model}_change", args=[row.pk])
    reply = browser.session.post(
        browser.base_url + change,
        data={"user": str(victim.pk), "csrfmiddlewaretoken": browser.session.cookies.get("idp_csrf")},
        headers={"Referer": browser.base_url + change},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 403
    row.refresh_from_db()
    assert row.user_id == staff.pk


def admin_browser_for(live_server, user) -> Browser:
    browser = Browser(live_server.url)
    reply = browser.sign_in_to_admin(user)
    assert reply.status_code == 302, reply.text[:300]
    browser.user = user
    return browser
