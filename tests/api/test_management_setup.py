"""Every install can administer itself: migrations make the management permissions and the
idp-admin role, and the demo bootstrap gives them to its admin."""

from __future__ import annotations

import importlib
from io import StringIO

from django.apps import apps
from django.core.management import call_command

from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Permission, Role, User
from accounts.selectors import subject_access
from idp.models import Application

migration = importlib.import_module("accounts.migrations.0004_management_permissions")


def test_the_migration_makes_the_admin_role_with_every_management_permission_once(db):
    Role.objects.filter(name=ADMIN_ROLE).delete()
    Permission.objects.filter(codename__in=MANAGEMENT_PERMISSIONS).delete()

    migration.create_admin_role(apps, None)
    migration.create_admin_role(apps, None)  # a re-run (or an install that has them) changes nothing

    role = Role.objects.get(name=ADMIN_ROLE, application__isnull=True)
    assert sorted(role.permissions.values_list("codename", flat=True)) == sorted(MANAGEMENT_PERMISSIONS)
    assert Permission.objects.filter(codename__in=MANAGEMENT_PERMISSIONS).count() == 6
    assert set(migration.PERMISSIONS) == set(MANAGEMENT_PERMISSIONS), "the migration and the code agree"


def test_the_demo_admin_administers_through_the_api(db):
    call_command("bootstrap_demo", stdout=StringIO())

    user = User.objects.get(username="demo-admin")
    access = subject_access(user_id=user.pk)
    assert access.roles == [ADMIN_ROLE]
    assert access.permissions == sorted(MANAGEMENT_PERMISSIONS)
    assert "idp.manage" in Application.objects.get(name="Demo client").scope_list
