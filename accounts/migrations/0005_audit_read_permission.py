"""The audit trail's read permission, audit.read (GET /api/v1/audit/), held by the global role
idp-admin.

Historical models only, as in 0004. The audit rows written here join the hash chain as
accounts/migrations/_audit_events.py says.
"""

from django.db import migrations
from django.utils import timezone

from accounts.migrations._audit_events import migration_record

CODENAME = "audit.read"
DESCRIPTION = "Read the audit trail."
ADMIN_ROLE = "idp-admin"
ACTOR = "migration accounts.0005"


def grant_audit_read(apps, schema_editor):
    Permission = apps.get_model("accounts", "Permission")
    Role = apps.get_model("accounts", "Role")

    def record(action, target_type, target_id, data):
        migration_record(
            apps, schema_editor, actor=ACTOR, action=action, target_type=target_type, target_id=target_id, data=data
        )

    permission, created = Permission.objects.get_or_create(codename=CODENAME, defaults={"description": DESCRIPTION})
    if created:
        record("permission.created", "accounts.permission", permission.pk, {})
    # 0004 made the role on every install; one an operator deleted since stays deleted.
    role = Role.objects.filter(name=ADMIN_ROLE, application__isnull=True).first()
    if role is not None and not role.permissions.filter(pk=permission.pk).exists():
        role.permissions.add(permission)
        # The shape of accounts.services.role_update's event.
        record("role.updated", "accounts.role", role.pk, {"name": ADMIN_ROLE, "added": [CODENAME], "removed": []})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_management_permissions"),
        ("audit", "0002_hash_chain"),
    ]

    operations = [migrations.RunPython(grant_audit_read, migrations.RunPython.noop)]
