"""Second factors: Role.require_mfa, set on idp-admin (its holders administer the provider: a
password alone is not enough); the permission idp.mfa.reset, held by idp-admin. Recorded in the
audit chain as 0006 records its changes."""

from django.db import migrations, models

import accounts.models
from accounts.migrations._audit_events import migration_record

CODENAME = "idp.mfa.reset"
DESCRIPTION = accounts.models.MANAGEMENT_PERMISSIONS[CODENAME]
ADMIN_ROLE = "idp-admin"
ACTOR = "migration accounts.0008"


def admin_role_requires_mfa(apps, schema_editor):
    Permission = apps.get_model("accounts", "Permission")
    Role = apps.get_model("accounts", "Role")

    def record(action, target_type, target_id, data):
        migration_record(
            apps, schema_editor, actor=ACTOR, action=action, target_type=target_type, target_id=target_id, data=data
        )

    permission, created = Permission.objects.get_or_create(codename=CODENAME, defaults={"description": DESCRIPTION})
    if created:
        record("permission.created", "accounts.permission", permission.pk, {})
    role = Role.objects.filter(name=ADMIN_ROLE, application__isnull=True).first()
    if role is None:
        return
    added = []
    if not role.permissions.filter(pk=permission.pk).exists():
        role.permissions.add(permission)
        added.append(CODENAME)
    if not role.require_mfa:
        Role.objects.filter(pk=role.pk).update(require_mfa=True)
    record(
        "role.updated",
        "accounts.role",
        role.pk,
        {"name": ADMIN_ROLE, "added": added, "removed": [], "require_mfa": True},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_username_look_alike_key"),
        ("audit", "0002_hash_chain"),
    ]

    operations = [
        migrations.AddField(
            model_name="role",
            name="require_mfa",
            field=models.BooleanField(
                default=False,
                help_text="Holders of this role sign in with a second factor; one without enrols right after the "
                "password.",
                verbose_name="require a second factor",
            ),
        ),
        migrations.RunPython(admin_role_requires_mfa, migrations.RunPython.noop),
    ]
