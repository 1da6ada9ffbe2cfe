"""Users through the API, and what every list endpoint shares: pagination, filters, ordering from
an allowlist, and answers that do not tell what exists to a caller who may not look."""

from __future__ import annotations

import itertools

from django.contrib.auth import authenticate

from accounts.models import User
from audit.models import AuditEvent
from tests.api.conftest import ALL_PERMISSIONS, role_with, unique
from tests.factories import USER_PASSWORD, UserFactory

LISTS = ["/users/", "/permissions/", "/roles/", "/role-assignments/", "/clients/"]


def test_a_user_is_created_signs_in_and_is_deactivated_once(admin):
    api = admin.api()
    created = api.post(
        "/users/",
        {"username": "grace", "email": "grace@example.com", "password": USER_PASSWORD, "first_name": "Grace"},
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert {key: user[key] for key in ("username", "email", "first_name", "is_active", "is_staff")} == {
        "username": "grace",
        "email": "grace@example.com",
        "first_name": "Grace",
        "is_active": True,
        "is_staff": False,
    }
    assert "password" not in user and USER_PASSWORD not in created.text
    assert authenticate(username="grace", password=USER_PASSWORD) is not None
    assert User.objects.get(username="grace").password != USER_PASSWORD

    first = api.post(f"/users/{user['id']}/deactivate/", {"reason": "left the company"})
    again = api.post(f"/users/{user['id']}/deactivate/", {})
    assert first.status_code == again.status_code == 200
    assert first.json()["is_active"] is False
    assert authenticate(username="grace", password=USER_PASSWORD) is None
    events = AuditEvent.objects.filter(action="user.deactivated")
    assert [(e.actor_type, e.actor_id, e.target_id, e.data) for e in events] == [
        (*admin.actor, str(user["id"]), {"reason": "left the company"})
    ]
    assert AuditEvent.objects.filter(action="user.created", target_id=str(user["id"])).exists()


def test_a_user_that_would_be_invalid_is_refused_with_the_field_named(admin):
    UserFactory(username="taken")
    count = User.objects.count()
    for fields, description in [
        ({"password": "short"}, "password:"),
        ({"password": "password123456"}, "password: This password is too common."),
        ({"username": "taken"}, "username: A user with that username already exists."),
        ({"username": "has space"}, "username:"),
        ({"email": "not-an-email"}, "email:"),
    ]:
        body = {"username": unique("new"), "email": "new@example.com", "password": USER_PASSWORD, **fields}
        reply = admin.api().post("/users/", body)
        assert reply.status_code == 400, fields
        assert reply.json()["error"] == "invalid_request"
        assert reply.json()["error_description"].startswith(description), reply.text
    assert User.objects.count() == count


def test_lists_page_filter_and_order(admin):
    api = admin.api()
    for index in range(5):
        UserFactory(username=f"page-{index}", is_active=index != 2)

    page = api.get("/users/?username=page-&ordering=-username&limit=2&offset=1").json()
    assert page["count"] == 5
    assert [user["username"] for user in page["results"]] == ["page-3", "page-2"]
    assert page["next"] and page["previous"]

    inactive = api.get("/users/?is_active=false").json()["results"]
    assert [user["username"] for user in inactive] == ["page-2"]

    managers = role_with(["idp.users.manage", "idp.users.read"], name="managers")
    role_with(["idp.users.read"], name="readers")
    roles = api.get("/roles/?permission=idp.users.manage&is_global=true&ordering=name").json()["results"]
    admins = role_with(ALL_PERMISSIONS).name  # the role the admin fixture holds
    assert [role["name"] for role in roles] == sorted([admins, "idp-admin", managers.name])


def test_ordering_takes_only_allowlisted_fields_and_pages_are_capped(admin):
    api = admin.api()
    by_id = [user["id"] for user in api.get("/users/").json()["results"]]
    for ordering in ("password", "-password", "is_superuser", "email__password", "id;drop", "?"):
        reply = api.get(f"/users/?ordering={ordering}")
        assert reply.status_code == 200, ordering
        assert [user["id"] for user in reply.json()["results"]] == by_id, f"{ordering} was not ignored"

    for index in range(3):
        UserFactory(username=f"cap-{index}")
    assert len(api.get("/users/?limit=1").json()["results"]) == 1
    assert api.get("/users/?limit=1000000").status_code == 200  # capped at 200, not an error
    assert api.get("/users/?offset=99999999999999999999999999").json()["results"] == []


# Every other hostile-input test is listed in tests/hostile.py.
def test_hostile_query_parameters_never_break_a_list(admin):
    api = admin.api()
    for path, query in itertools.product(
        LISTS,
        (
            "limit=-1",
            "limit=abc",
            "offset=-5",
            "offset=1e400",
            "limit=" + "9" * 4000,
            "ordering=" + "a" * 4000,
            "user=abc",
            "role=1e999",
            "role=NaN",
            "is_active=maybe",
            "is_global=%00",
            "name=%27%20OR%201%3D1%20--",
            "client_id=" + "x" * 5000,
            "username[$ne]=x",
        ),
    ):
        reply = api.get(f"{path}?{query}")
        assert reply.status_code in (200, 400), (path, query[:40], reply.status_code, reply.text[:200])
        body = reply.json()
        assert ("results" in body) if reply.status_code == 200 else (body["error"] == "invalid_request")


def test_a_caller_who_may_not_look_learns_nothing_about_what_exists(service_subject):
    subject = service_subject()
    subject.hold(["idp.users.read"])
    api = subject.api()
    existing = role_with([], name=unique("secret-project")).pk
    answers = [api.get(f"/roles/{role_id}/") for role_id in (existing, 999_999)]
    assert [reply.status_code for reply in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()

    subject.hold(["idp.roles.read"])
    missing = api.get("/roles/999999/")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "error_description": "no such object"}
