"""Usernames unique ignoring case, compatibility forms and look-alike letters (User.username_key);
e-mail addresses unique ignoring case; the permission idp.apikeys.manage, held by idp-admin.

An install whose users already hold two names that now count as one (alice and Alice) stops at the
unique index with an IntegrityError naming the key: rename one of them, then migrate again.
"""

import django.contrib.auth.validators
import django.db.models.functions.text
from django.db import migrations, models
from django.utils import timezone

import accounts.models
from accounts.migrations._audit_events import migration_record

CODENAME = "idp.apikeys.manage"
DESCRIPTION = accounts.models.MANAGEMENT_PERMISSIONS[CODENAME]
ADMIN_ROLE = "idp-admin"
ACTOR = "migration accounts.0006"


def fill_username_keys(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    for user in User.objects.only("pk", "username").iterator():
        User.objects.filter(pk=user.pk).update(username_key=accounts.models.username_key(user.username))


def grant_apikeys_manage(apps, schema_editor):
    """As 0005 grants audit.read: the permission, added to idp-admin, both recorded in the chain."""
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
    if role is not None and not role.permissions.filter(pk=permission.pk).exists():
        role.permissions.add(permission)
        record("role.updated", "accounts.role", role.pk, {"name": ADMIN_ROLE, "added": [CODENAME], "removed": []})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_audit_read_permission"),
        ("audit", "0002_hash_chain"),
    ]

    operations = [
        migrations.AlterField(
            model_name="user",
            name="username",
            field=models.CharField(
                error_messages={"unique": "A user with that username already exists."},
                help_text="Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only.",
                max_length=150,
                unique=True,
                validators=[
                    django.contrib.auth.validators.UnicodeUsernameValidator(),
                    accounts.models.validate_username_script,
                ],
                verbose_name="username",
            ),
        ),
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.CharField(editable=False, max_length=600, null=True),
        ),
        migrations.RunPython(fill_username_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="username_key",
            field=models.CharField(editable=False, max_length=600, unique=True),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("email"),
                condition=models.Q(("email", ""), _negated=True),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with that email address already exists.",
            ),
        ),
        migrations.RunPython(grant_apikeys_manage, migrations.RunPython.noop),
    ]
