"""How accounts' data migrations record audit events (not a migration: the loader skips names
starting with "_"). Historical models only.

Written before the sealer, 0005 and 0006 run before audit 0005 on a fresh install, where events
join the chain as audit.record then appended them: under the chain's advisory lock, linked to the
last row's hash, over the fields as stored (a running server may record events meanwhile). Run
against the schema of audit 0005 on (a test re-running a migration's function), they are inserted
unsealed, as audit.record does now, and the sealer links them.
"""

from django.utils import timezone

from audit import CHAIN_LOCK, chain


def migration_record(apps, schema_editor, *, actor, action, target_type, target_id, data):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    connection = schema_editor.connection
    event = AuditEvent(
        created_at=timezone.now(),
        action=action,
        actor_type="system",
        actor_id=actor,
        target_type=target_type,
        target_id=str(target_id),
        data=data,
    )
    if any(field.name == "position" for field in AuditEvent._meta.fields):
        event.save()
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK])
    previous = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or chain.GENESIS
    fields = {name: getattr(event, name) for name in chain.FIELDS if name != "time"}
    event.hash = chain.link(previous, {**fields, "time": chain.timestamp(event.created_at)})
    event.save()
