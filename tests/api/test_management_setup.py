"""Every install can administer itself: migrations make the management permissions and the
idp-admin role, and the demo bootstrap gives them to its admin."""

from __future__ import annotations

import importlib
from io import StringIO

from django.core.management import call_command

import audit
from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Permission, Role, User
from accounts.selectors import subject_access
from audit import chain
from audit.models import AuditEvent
from idp.models import Application

migration = importlib.import_module("accounts.migrations.0004_management_permissions")


def test_the_migrations_make_the_admin_role_with_every_management_permission_once(db):
    # The test database was built by the migrations; their audit rows were sealed into the chain
    # by audit 0002 and numbered in that order by audit 0005.
    role = Role.objects.get(name=ADMIN_ROLE, application__isnull=True)
    assert set(MANAGEMENT_PERMISSIONS) <= set(role.permissions.values_list("codename", flat=True))
    assert Permission.objects.filter(codename__in=MANAGEMENT_PERMISSIONS).count() == len(MANAGEMENT_PERMISSIONS)
    # added by 0005, 0006 and 0008, and by idp 0011
    later = {"audit.read", "idp.apikeys.manage", "idp.mfa.reset", "idp.sessions.end"}
    assert set(migration.PERMISSIONS) | later == set(MANAGEMENT_PERMISSIONS), "the migrations and the code agree"
    created = AuditEvent.objects.filter(action="role.created", actor_id="migration accounts.0004")
    assert created.count() == 1
    audit.seal()
    events = AuditEvent.objects.order_by("position")
    assert list(chain.walk(event.as_chain_event() for event in events))[-1].broken is None


def test_the_demo_admin_administers_through_the_api(db):
    call_command("bootstrap_demo", stdout=StringIO())

    user = User.objects.get(username="demo-admin")
    access = subject_access(user_id=user.pk)
    assert access.roles == [ADMIN_ROLE]
    assert access.permissions == sorted(MANAGEMENT_PERMISSIONS)
    assert "idp.manage" in Application.objects.get(name="Demo client").scope_list
