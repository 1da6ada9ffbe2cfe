"""The tamper-evident chain: request context fields, a hash per event linking it to the one
before (audit.chain), and on PostgreSQL a trigger refusing UPDATE and DELETE.

Runs after accounts 0004, whose events (written with historical models, without a hash) are sealed
into the chain here, in id order, before the trigger makes rows immutable.
"""

from django.db import migrations, models

from audit import chain

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: %% refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""
DROP_TRIGGER_SQL = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


def seal_existing_events(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    previous = chain.GENESIS
    for event in AuditEvent.objects.order_by("id").iterator():
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
        previous = chain.link(previous, fields)
        AuditEvent.objects.filter(pk=event.pk).update(hash=previous)


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("accounts", "0004_management_permissions"),
    ]

    operations = [
        migrations.AlterField(model_name="auditevent", name="created_at", field=models.DateTimeField(db_index=True)),
        migrations.AlterField(
            model_name="auditevent",
            name="client_id",
            field=models.CharField(blank=True, db_index=True, max_length=255),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="source_ip",
            field=models.CharField(blank=True, max_length=45, default=""),
        ),
        migrations.AddField(
            model_name="auditevent", name="user_agent", field=models.CharField(blank=True, max_length=512, default="")
        ),
        migrations.AddField(
            model_name="auditevent", name="request_id", field=models.CharField(blank=True, max_length=64, default="")
        ),
        migrations.AddField(model_name="auditevent", name="hash", field=models.CharField(max_length=64, null=True)),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_type", "actor_id"], name="audit_event_actor"),
        ),
        migrations.RunPython(seal_existing_events, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent", name="hash", field=models.CharField(max_length=64, unique=True)
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
