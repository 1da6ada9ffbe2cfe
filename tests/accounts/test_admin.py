"""The admin, as a staff member uses it: signed in through the real login form on the live server,
with a browser's cookie jar and CSRF token. Role grants and revocations made in the inlines are
audited."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from django.contrib.auth.models import Group
from django.urls import reverse

import audit
from accounts.models import Permission, Role, RoleAssignment, User
from accounts.services import role_create, role_grant
from audit.models import AuditEvent
from tests.factories import USER_PASSWORD, make_client, make_user, totp_device
from tests.mfa.codes import totp_code

SYSTEM = audit.Actor.system("tests")


class _FormReader(HTMLParser):
    """What a browser would submit from the form with the given id (None: the page's first form
    other than the admin header's sign-out form), as it stands on the page."""

    def __init__(self, form_id: str | None) -> None:
        super().__init__()
        self.form_id = form_id
        self.fields: list[tuple[str, str]] = []
        self.found = False
        self._inside = False
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            wanted = attributes.get("id") == self.form_id if self.form_id else attributes.get("id") != "logout-form"
            self._inside = wanted and not self.found
            self.found = self.found or self._inside
        name = attributes.get("name", "")
        if not self._inside or (not name and tag != "option") or "__prefix__" in name:
            return  # __prefix__: the template row the admin's JavaScript clones; browsers do not send it
        if tag == "input":
            kind = attributes.get("type", "text")
            if kind in {"submit", "button", "file", "image", "reset"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in attributes:
                return
            self.fields.append((name, attributes.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            self.fields.append((self._select, attributes.get("value", "")))
        elif tag == "textarea":
            self._textarea, self._text = name, ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def read_form(html: str, form_id: str | None) -> list[tuple[str, str]]:
    reader = _FormReader(form_id)
    reader.feed(html)
    assert reader.found, f"no form #{form_id} on the page"
    return reader.fields


class Browser:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.user = None  # who signed in, once someone has

    def get(self, path: str) -> requests.Response:
        return self.session.get(urljoin(self.base_url, path), allow_redirects=False, timeout=10)

    def submit(self, path: str, form_id: str | None, changes: dict[str, str] = {}) -> requests.Response:  # noqa: B006
        """Load the page and post its form back, CSRF token included, with some fields changed."""
        page = self.get(path)
        assert page.status_code == 200, page.status_code
        fields = [(name, value) for name, value in read_form(page.text, form_id) if name not in changes]
        fields += list(changes.items())
        return self.session.post(
            page.url, data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10
        )

    def sign_in(self, login_path: str, form_id: str | None, username: str) -> requests.Response:
        return self.submit(login_path, form_id, {"username": username, "password": USER_PASSWORD})

    def sign_in_to_admin(self, user: Any) -> requests.Response:
        """Sign in as staff reach Django admin: the sign-in page, then a code from an authenticator
        app (set up for the user here). Returns the answer to the code: a redirect to /admin/."""
        _device, seed = totp_device(user)
        reply = self.sign_in("/accounts/login/?next=/admin/", None, user.get_username())
        assert reply.status_code == 302 and reply.headers["Location"].startswith("/accounts/login/verify/"), reply.text
        return self.submit(reply.headers["Location"], None, {"method": "totp", "code": totp_code(seed)})


def assert_renders(browser: Browser, path: str) -> str:
    reply = browser.get(path)
    assert reply.status_code == 200, f"{path} answered {reply.status_code}"
    assert "Traceback" not in reply.text and "Server Error" not in reply.text, path
    return reply.text


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def staff_browser(live_server):
    admin_user = make_user(username="root")
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save(update_fields=["is_staff", "is_superuser"])
    browser = Browser(live_server.url)
    reply = browser.sign_in_to_admin(admin_user)
    assert reply.status_code == 302 and reply.headers["Location"] == "/admin/", "signed in to the admin"
    browser.user = admin_user
    return browser


@pytest.fixture
def world(db):
    """One of everything: a machine client with a role of its own, a global role, a group holding
    it, and a user holding the client role directly and the global one through the group."""
    machine = make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"]).application
    reports = role_create(name="reports", permissions=["reports.read", "reports.export"], actor=SYSTEM)
    ops = role_create(name="ops", application=machine, permissions=["ops.deploy"], actor=SYSTEM)
    group = Group.objects.create(name="analysts")
    user = make_user(username="bob")
    user.groups.add(group)
    role_grant(role=reports, group=group, actor=SYSTEM)
    user_assignment = role_grant(role=ops, user=user, actor=SYSTEM)
    role_grant(role=ops, client=machine, actor=SYSTEM)
    return {
        "client": machine,
        "reports": reports,
        "ops": ops,
        "group": group,
        "user": user,
        "assignment": user_assignment,
        "permission": Permission.objects.get(codename="reports.read"),
    }


# --- every page renders --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "obj", "changelist_queries"),
    [
        ("accounts_permission", "permission", ["?q=reports"]),
        ("accounts_role", "ops", ["?q=op", "?kind=global", "?kind=client", "?o=3"]),
        ("accounts_roleassignment", "assignment", ["?holder=user", "?holder=client", "?kind=global", "?q=bob"]),
        ("accounts_user", "user", ["?q=bob"]),
        ("auth_group", "group", ["?q=ana"]),
        ("idp_application", "client", ["?q=Client"]),
    ],
)
def test_changelist_add_and_change_pages_render(staff_browser, world, model, obj, changelist_queries):
    changelist = reverse(f"admin:{model}_changelist")
    assert_renders(staff_browser, changelist)
    for query in changelist_queries:
        assert_renders(staff_browser, changelist + query)
    assert_renders(staff_browser, reverse(f"admin:{model}_add"))
    assert_renders(staff_browser, reverse(f"admin:{model}_change", args=[world[obj].pk]))


def test_the_user_page_shows_effective_roles_and_permissions_across_clients(staff_browser, world):
    page = assert_renders(staff_browser, reverse("admin:accounts_user_change", args=[world["user"].pk]))
    for item in ("ops", "reports", "ops.deploy", "reports.export", "reports.read"):
        assert f"<li>{item}</li>" in page, f"{item} listed under effective access"
    assert 'name="role_assignments-TOTAL_FORMS"' in page, "the role assignment inline is there"
    assert 'name="email_verified"' in page and 'name="zoneinfo"' in page, "the OIDC profile fields"


def test_the_client_page_lists_its_roles_and_its_service_account_roles(staff_browser, world):
    page = assert_renders(staff_browser, reverse("admin:idp_application_change", args=[world["client"].pk]))
    assert "ops.deploy" in page, "the client's own roles, with their permissions"
    assert reverse("admin:accounts_role_change", args=[world["ops"].pk]) in page, "linked to the role page"
    assert 'name="role_assignments-TOTAL_FORMS"' in page, "the service-account inline"
    assert reverse("admin:accounts_role_add") + f"?application={world['client'].pk}" in page


def test_an_authorization_code_client_has_no_service_account_inline(staff_browser, db):
    browser_client = make_client().application
    page = assert_renders(staff_browser, reverse("admin:idp_application_change", args=[browser_client.pk]))
    assert 'name="role_assignments-TOTAL_FORMS"' not in page


# --- writes go through the audited services ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "holder", "target"),
    [
        ("accounts_user", "user", lambda w: audit.Target.user(w["user"])),
        ("auth_group", "group", lambda w: audit.Target.of(w["group"])),
        ("idp_application", "client", lambda w: audit.Target.client(w["client"])),
    ],
)
def test_a_role_granted_and_revoked_in_an_inline_is_audited(staff_browser, world, model, holder, target):
    granted = role_create(name="auditor", permissions=["audit.read"], actor=SYSTEM)
    change_page = reverse(f"admin:{model}_change", args=[world[holder].pk])
    page = staff_browser.get(change_page).text
    form_id = f"{model.split('_', 1)[1]}_form"
    rows = int(dict(read_form(page, form_id))["role_assignments-TOTAL_FORMS"])

    reply = staff_browser.submit(
        change_page,
        form_id,
        {"role_assignments-TOTAL_FORMS": str(rows + 1), f"role_assignments-{rows}-role": str(granted.pk), "_save": ""},
    )
    assert reply.status_code == 302, "saved (a 200 here is the form again, with errors)"
    assignment = RoleAssignment.objects.get(role=granted, **{holder: world[holder]})
    expected = target(world)
    event = AuditEvent.objects.get(action="role.granted", data__role_id=granted.pk)
    assert (event.actor_type, event.actor_id) == ("user", str(staff_browser.user.pk))
    assert (event.target_type, event.target_id) == (expected.type, expected.id)

    page = staff_browser.get(change_page).text
    position = next(
        name.split("-")[1]
        for name, value in read_form(page, form_id)
        if name.startswith("role_assignments-") and name.endswith("-id") and value == str(assignment.pk)
    )
    reply = staff_browser.submit(change_page, form_id, {f"role_assignments-{position}-DELETE": "on", "_save": ""})
    assert reply.status_code == 302
    assert not RoleAssignment.objects.filter(pk=assignment.pk).exists()
    revoked = AuditEvent.objects.get(action="role.revoked", data__role_id=granted.pk)
    assert (revoked.target_type, revoked.target_id) == (expected.type, expected.id)


def test_existing_assignments_cannot_be_switched_to_another_role_in_the_inline(staff_browser, world):
    """A row's role is read-only: posting a different role for it changes nothing."""
    other = role_create(name="other", actor=SYSTEM)
    change_page = reverse("admin:accounts_user_change", args=[world["user"].pk])
    reply = staff_browser.submit(change_page, "user_form", {"role_assignments-0-role": str(other.pk), "_save": ""})
    assert reply.status_code == 302
    assert list(RoleAssignment.objects.filter(user=world["user"]).values_list("role__name", flat=True)) == ["ops"]


def test_roles_and_permissions_created_in_the_admin_are_audited(staff_browser, world):
    reply = staff_browser.submit(
        reverse("admin:accounts_permission_add"),
        "permission_form",
        {"codename": "billing.refund", "description": "Refund an invoice", "_save": ""},
    )
    assert reply.status_code == 302
    refund = Permission.objects.get(codename="billing.refund")

    reply = staff_browser.submit(
        reverse("admin:accounts_role_add") + f"?application={world['client'].pk}",
        "role_form",
        {"name": "billing", "permissions": str(refund.pk), "_save": ""},
    )
    assert reply.status_code == 302
    role = Role.objects.get(name="billing")
    assert role.application == world["client"], "the client preset by the link on the client page"
    assert list(role.permissions.values_list("codename", flat=True)) == ["billing.refund"]
    created = AuditEvent.objects.filter(actor_type="user", actor_id=str(staff_browser.user.pk))
    assert list(created.values_list("action", "target_type", "target_id")) == [
        ("login.succeeded", "user", str(staff_browser.user.pk)),  # signing in to the admin
        ("permission.created", "accounts.permission", str(refund.pk)),
        ("admin.changed", "accounts.permission", str(refund.pk)),
        ("role.created", "accounts.role", str(role.pk)),
        ("admin.changed", "accounts.role", str(role.pk)),
    ]


def test_an_assignment_added_on_its_own_page_is_audited_and_deleting_a_role_revokes_it(staff_browser, world):
    reply = staff_browser.submit(
        reverse("admin:accounts_roleassignment_add"),
        "roleassignment_form",
        {"role": str(world["reports"].pk), "user": str(world["user"].pk), "_save": ""},
    )
    assert reply.status_code == 302
    assert AuditEvent.objects.filter(action="role.granted", target_id=str(world["user"].pk)).count() == 2

    reply = staff_browser.submit(reverse("admin:accounts_role_delete", args=[world["reports"].pk]), None)
    assert reply.status_code == 302
    assert not Role.objects.filter(name="reports").exists()
    revoked = AuditEvent.objects.filter(action="role.revoked", data__role_id=world["reports"].pk)
    assert sorted(revoked.values_list("target_type", flat=True)) == ["auth.group", "user"], "each holder's loss"
    assert AuditEvent.objects.filter(action="role.deleted", target_id=str(world["reports"].pk)).exists()


def test_changing_a_roles_permissions_is_audited(staff_browser, world):
    export = Permission.objects.get(codename="reports.export")
    reply = staff_browser.submit(
        reverse("admin:accounts_role_change", args=[world["reports"].pk]),
        "role_form",
        {"permissions": str(export.pk), "description": "Exports only", "_save": ""},
    )

    assert reply.status_code == 302
    assert list(world["reports"].permissions.values_list("codename", flat=True)) == ["reports.export"]
    event = AuditEvent.objects.get(action="role.updated", target_id=str(world["reports"].pk))
    assert (event.actor_type, event.actor_id) == ("user", str(staff_browser.user.pk))
    assert event.data["removed"] == ["reports.read"]


def test_deleting_a_group_revokes_its_roles_audited(staff_browser, world):
    reply = staff_browser.submit(reverse("admin:auth_group_delete", args=[world["group"].pk]), None)

    assert reply.status_code == 302
    assert not Group.objects.exists()
    revoked = AuditEvent.objects.get(action="role.revoked")
    assert (revoked.target_type, revoked.target_id, revoked.data["role"]) == (
        "auth.group",
        str(world["group"].pk),
        "reports",
    )


def test_a_second_global_role_with_the_same_name_is_refused_with_a_reason(staff_browser, world):
    reply = staff_browser.submit(reverse("admin:accounts_role_add"), "role_form", {"name": "reports", "_save": ""})

    assert reply.status_code == 200
    assert "A global role with this name already exists." in reply.text
    assert Role.objects.filter(name="reports").count() == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "exactly one holder"),
        ({"user": "bob", "group": "analysts"}, "exactly one holder"),
        ({"client": "browser"}, "Only a client_credentials client"),
        ({"client": "other-machine"}, "its own client"),
    ],
)
def test_a_bad_assignment_is_refused_with_a_reason(staff_browser, world, changes, message):
    objects = {
        "bob": world["user"].pk,
        "analysts": world["group"].pk,
        "browser": make_client().application.pk,
        "other-machine": make_client(grant="client_credentials", redirect_uris=[]).application.pk,
    }
    data = {field: str(objects[name]) for field, name in changes.items()}
    reply = staff_browser.submit(
        reverse("admin:accounts_roleassignment_add"),
        "roleassignment_form",
        {"role": str(world["ops"].pk), **data, "_save": ""},
    )
    assert reply.status_code == 200, "the form again"
    assert message in reply.text
    assert RoleAssignment.objects.count() == 3


def test_adding_a_user_named_like_another_but_for_case_is_refused_with_a_reason(staff_browser, db):
    make_user(username="alice")
    reply = staff_browser.submit(
        reverse("admin:accounts_user_add"),
        "user_form",
        {"username": "ALICE", "password1": USER_PASSWORD, "password2": USER_PASSWORD, "_save": ""},
    )
    assert reply.status_code == 200, f"the form again, not {reply.status_code}"
    assert "already exists" in reply.text
    assert not User.objects.filter(username="ALICE").exists()


def test_non_staff_users_are_sent_to_the_admin_login(live_server, db):
    make_user(username="carol")
    browser = Browser(live_server.url)
    assert browser.sign_in(reverse("login"), None, "carol").status_code == 302, "signed in to the site"
    for path in ("/admin/", reverse("admin:accounts_role_changelist"), reverse("admin:accounts_user_change", args=[1])):
        reply = browser.get(path)
        assert reply.status_code == 302
        assert reply.headers["Location"].startswith(reverse("admin:login") + "?next=")
