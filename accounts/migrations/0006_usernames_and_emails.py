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
from audit import CHAIN_LOCK, chain

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
    AuditEvent = apps.get_model("audit", "AuditEvent")
    connection = schema_editor.connection

    def record(action, target_type, target_id, data):
        if any(field.name == "position" for field in AuditEvent._meta.fields):
            # Run against the schema of audit 0005 on (a test re-running this function): events are
            # inserted unsealed there, and the sealer links them (audit.sealing).
            AuditEvent.objects.create(
                created_at=timezone.now(),
                action=action,
                actor_type="system",
                actor_id=ACTOR,
                target_type=target_type,
                target_id=str(target_id),
                data=data,
            )
            return
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK])
        previous = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or chain.GENESIS
        event = AuditEvent(
            created_at=timezone.now(),
            action=action,
            actor_type="system",
            actor_id=ACTOR,
            target_type=target_type,
            target_id=str(target_id),
            data=data,
        )
        fields = {name: getattr(event, name) for name in chain.FIELDS if name != "time"}
        event.hash = chain.link(previous, {**fields, "time": chain.timestamp(event.created_at)})
        event.save()

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
