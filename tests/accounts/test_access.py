"""subject_access: what a user (directly and through groups) or a service account holds, as one
client sees it."""

from __future__ import annotations

import socket
import threading

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test import override_settings

import audit
from accounts.models import Permission, RoleAssignment
from accounts.selectors import Access, subject_access
from accounts.services import role_create, role_delete, role_grant, role_revoke
from tests.factories import make_client, make_machine_client, make_user

SYSTEM = audit.Actor.system("tests")


@pytest.fixture
def clients(db):
    """Two authorization-code clients and two machine clients."""
    return {
        "a": make_client().application,
        "b": make_client().application,
        "machine": make_machine_client().application,
        "machine2": make_machine_client().application,
    }


def role(name: str, *permissions: str, client=None):
    return role_create(name=name, application=client, permissions=list(permissions), actor=SYSTEM)


def test_a_user_holds_direct_and_group_roles_once_each(db):
    bob = make_user()
    staff, oncall = Group.objects.create(name="staff"), Group.objects.create(name="oncall")
    bob.groups.add(staff, oncall)
    direct = role("direct", "a.read", "shared.read")
    shared = role("shared", "shared.read")
    role_grant(role=direct, user=bob, actor=SYSTEM)
    role_grant(role=shared, group=staff, actor=SYSTEM)
    role_grant(role=shared, group=oncall, actor=SYSTEM)
    role_grant(role=shared, user=bob, actor=SYSTEM)
    role_grant(role=role("oncall", "pager.ack"), group=oncall, actor=SYSTEM)
    # Someone else's roles, and a group bob is not in, count for nothing.
    role_grant(role=role("theirs", "x.y"), user=make_user(), actor=SYSTEM)
    role_grant(role=role("elsewhere", "x.z"), group=Group.objects.create(name="other"), actor=SYSTEM)

    assert subject_access(user_id=bob.pk) == Access(
        roles=["direct", "oncall", "shared"], permissions=["a.read", "pager.ack", "shared.read"]
    )


def test_a_user_without_roles_holds_nothing(db):
    assert subject_access(user_id=make_user().pk) == Access(roles=[], permissions=[])


def test_a_clients_roles_appear_only_in_that_clients_context(clients):
    bob = make_user()
    team = Group.objects.create(name="team")
    bob.groups.add(team)
    role_grant(role=role("member", "site.use"), user=bob, actor=SYSTEM)
    role_grant(role=role("editor", "a.write", client=clients["a"]), user=bob, actor=SYSTEM)
    role_grant(role=role("editor", "b.write", client=clients["b"]), group=team, actor=SYSTEM)

    assert subject_access(user_id=bob.pk) == Access(roles=["member"], permissions=["site.use"])
    assert subject_access(user_id=bob.pk, application_pk=clients["a"].pk) == Access(
        roles=["editor", "member"], permissions=["a.write", "site.use"]
    )
    assert subject_access(user_id=bob.pk, application_pk=clients["b"].pk) == Access(
        roles=["editor", "member"], permissions=["b.write", "site.use"]
    ), "b's editor, held through the group, with b's permissions only"
    assert subject_access(user_id=bob.pk, all_clients=True) == Access(
        roles=["editor", "member"], permissions=["a.write", "b.write", "site.use"]
    )


def test_a_service_account_holds_its_own_assignments_only(clients):
    machine = clients["machine"]
    bob = make_user()
    role_grant(role=role("reader", "data.read"), client=machine, actor=SYSTEM)
    role_grant(role=role("sync", "sync.run", client=machine), client=machine, actor=SYSTEM)
    role_grant(role=role("a-admin", "a.admin", client=clients["a"]), client=machine, actor=SYSTEM)
    role_grant(role=role("human", "people.thing"), user=bob, actor=SYSTEM)
    role_grant(role=role("other-machine", "m.x"), client=clients["machine2"], actor=SYSTEM)

    as_itself = subject_access(client_pk=machine.pk, application_pk=machine.pk)
    assert as_itself == Access(roles=["reader", "sync"], permissions=["data.read", "sync.run"])
    assert subject_access(client_pk=machine.pk, all_clients=True).roles == ["a-admin", "reader", "sync"]
    assert subject_access(user_id=bob.pk, all_clients=True).roles == ["human"], "a user never gets a client's roles"


@pytest.mark.parametrize("kwargs", [{}, {"user_id": 1, "client_pk": 1}])
def test_exactly_one_subject(db, kwargs):
    with pytest.raises(ValueError, match="exactly one"):
        subject_access(**kwargs)


@pytest.mark.parametrize("count", [1, 20])
def test_a_constant_number_of_queries_however_many_roles(clients, django_assert_num_queries, count):
    bob = make_user()
    group = Group.objects.create(name="many")
    bob.groups.add(group)
    for number in range(count):
        held = role(f"role{number}", f"perm.p{number}", "perm.common", client=clients["a"] if number % 3 else None)
        role_grant(role=held, **({"group": group} if number % 2 else {"user": bob}), actor=SYSTEM)

    with django_assert_num_queries(1):
        access = subject_access(user_id=bob.pk, application_pk=clients["a"].pk)
    with django_assert_num_queries(0):  # from the shared cache until something changes
        again = subject_access(user_id=bob.pk, application_pk=clients["a"].pk)

    assert len(access.roles) == count
    assert len(access.permissions) == count + 1
    assert again == access


def _revoke_the_assignment(held, bob, group):
    role_revoke(assignment=RoleAssignment.objects.get(role=held, user=bob), actor=SYSTEM)


def _remove_the_permission_from_the_role(held, bob, group):
    held.permissions.remove(Permission.objects.get(codename="perm.direct"))


def _clear_the_roles_permissions(held, bob, group):
    held.permissions.clear()


def _delete_the_permission(held, bob, group):
    Permission.objects.get(codename="perm.direct").delete()


def _delete_the_role(held, bob, group):
    role_delete(role_id=held.pk, actor=SYSTEM)


def _take_bob_out_of_the_group(held, bob, group):
    bob.groups.remove(group)


def _delete_the_group(held, bob, group):
    group.delete()


def _rename_the_role_in_admin(held, bob, group):
    held.name = "renamed"
    held.save()


@pytest.mark.parametrize(
    "change",
    [
        _revoke_the_assignment,
        _remove_the_permission_from_the_role,
        _clear_the_roles_permissions,
        _delete_the_permission,
        _delete_the_role,
        _take_bob_out_of_the_group,
        _delete_the_group,
        _rename_the_role_in_admin,
    ],
)
def test_every_change_to_who_holds_what_shows_in_the_next_answer(db, change):
    bob = make_user()
    group = Group.objects.create(name="crew")
    bob.groups.add(group)
    held = role("direct", "perm.direct")
    role_grant(role=held, user=bob, actor=SYSTEM)
    role_grant(role=role("crew", "perm.crew"), group=group, actor=SYSTEM)
    before = subject_access(user_id=bob.pk)
    assert before == Access(roles=["crew", "direct"], permissions=["perm.crew", "perm.direct"])
    assert subject_access(user_id=bob.pk) == before  # cached now

    change(held, bob, group)

    assert subject_access(user_id=bob.pk) == _access_read_from_the_database(bob)
    assert subject_access(user_id=bob.pk) != before


def _access_read_from_the_database(user) -> Access:
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
        return subject_access(user_id=user.pk)


def test_without_a_shared_cache_every_answer_is_read_anew(db, django_assert_num_queries):
    bob = make_user()
    role_grant(role=role("direct", "perm.direct"), user=bob, actor=SYSTEM)
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=local), django_assert_num_queries(2):
        subject_access(user_id=bob.pk)
        subject_access(user_id=bob.pk)


def test_an_unreachable_redis_means_reading_the_database_not_failing(db):
    bob = make_user()
    role_grant(role=role("direct", "perm.direct"), user=bob, actor=SYSTEM)
    closed = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    with override_settings(CACHES=closed):
        assert subject_access(user_id=bob.pk) == Access(roles=["direct"], permissions=["perm.direct"])


@pytest.mark.django_db(transaction=True)  # asked from a thread of its own, which sees only committed rows
def test_a_redis_that_hangs_means_reading_the_database_not_waiting_forever():
    """A server that accepts connections and never answers (a hung Redis, a black-holed route):
    the client's timeout (settings.CACHES) ends the wait, and the answer comes from the database
    rather than an error."""
    bob = make_user()
    role_grant(role=role("direct", "perm.direct"), user=bob, actor=SYSTEM)
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    acceptor = threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True)
    acceptor.start()
    hung = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"}}
    answers: list[Access] = []

    def ask() -> None:
        with override_settings(CACHES=hung):
            answers.append(subject_access(user_id=bob.pk))
        connection.close()

    asker = threading.Thread(target=ask, daemon=True)
    try:
        asker.start()
        asker.join(30)  # a deadline for a hang, not a measurement
        assert not asker.is_alive(), "subject_access waited on the silent Redis"
        assert answers == [Access(roles=["direct"], permissions=["perm.direct"])]
    finally:
        for held in accepted:
            held.close()
        silent.close()
