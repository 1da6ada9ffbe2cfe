"""Every install gets the management API's permissions and the global role idp-admin holding them.

Historical models only (migrations outlive the code), so the rows and their audit events are
written here directly; accounts.services.admin_role_ensure does the same at run time.
"""

from django.db import migrations

PERMISSIONS = {
    "idp.users.read": "List users.",
    "idp.users.manage": "Create and deactivate users.",
    "idp.roles.read": "List permissions, roles and role assignments.",
    "idp.roles.manage": "Create permissions and roles, change and delete roles, grant and revoke them.",
    "idp.clients.read": "List clients.",
    "idp.clients.manage": "Register clients, rotate their secrets and disable them.",
}
ADMIN_ROLE = "idp-admin"


def create_admin_role(apps, schema_editor):
    Permission = apps.get_model("accounts", "Permission")
    Role = apps.get_model("accounts", "Role")
    AuditEvent = apps.get_model("audit", "AuditEvent")

    def record(action, target_type, target_id, data):
        AuditEvent.objects.create(
            action=action,
            actor_type="system",
            actor_id="migration accounts.0004",
            target_type=target_type,
            target_id=str(target_id),
            data=data,
        )

    permissions = []
    for codename, description in PERMISSIONS.items():
        permission, created = Permission.objects.get_or_create(codename=codename, defaults={"description": description})
        if created:
            record("permission.created", "accounts.permission", permission.pk, {})
        permissions.append(permission)
    role, created = Role.objects.get_or_create(
        name=ADMIN_ROLE,
        application=None,
        defaults={"description": "Administers this identity provider through its management API."},
    )
    role.permissions.add(*permissions)
    if created:
        record("role.created", "accounts.role", role.pk, {"name": ADMIN_ROLE, "permissions": sorted(PERMISSIONS)})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_rbac"),
        ("audit", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_admin_role, migrations.RunPython.noop)]
