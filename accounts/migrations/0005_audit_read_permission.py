"""The audit trail's read permission, audit.read (GET /api/v1/audit/), held by the global role
idp-admin.

Historical models only, as in 0004. The audit rows written here join the hash chain (audit.chain)
exactly as audit.record appends: under the chain's advisory lock, linked to the last row's hash,
over the fields as stored. A running server may record events while this migration runs.
"""

from django.db import migrations
from django.utils import timezone

from audit import CHAIN_LOCK, chain

CODENAME = "audit.read"
DESCRIPTION = "Read the audit trail."
ADMIN_ROLE = "idp-admin"
ACTOR = "migration accounts.0005"


def grant_audit_read(apps, schema_editor):
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
        fields = {
            "time": chain.timestamp(event.created_at),
            "action": event.action,
            "actor_type": event.actor_type,
            "actor_id": event.actor_id,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "client_id": event.client_id,
            "outcome": event.outcome,
            "source_ip": event.source_ip,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "data": event.data,
        }
        event.hash = chain.link(previous, fields)
        event.save()

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
