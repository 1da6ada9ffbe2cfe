"""Signed checkpoints of the chain head (audit.checkpoints), append-only like the events: on
PostgreSQL a trigger refuses UPDATE and DELETE. TRUNCATE stays possible (test flushes need it);
an export kept elsewhere, or a checkpoint beyond the chain's end, is what reveals a wiped table."""

from django.db import migrations, models

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION audit_checkpoint_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: %% refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_append_only();
"""
DROP_TRIGGER_SQL = """
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_auditcheckpoint;
DROP FUNCTION IF EXISTS audit_checkpoint_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_hash_chain"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(db_index=True)),
                ("event_count", models.PositiveBigIntegerField(db_index=True)),
                ("head_hash", models.CharField(max_length=64, unique=True)),
                ("last_event_id", models.BigIntegerField()),
                ("kid", models.CharField(max_length=64)),
                ("jws", models.TextField()),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
