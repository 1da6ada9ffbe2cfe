"""The chain comes off the request path: events are inserted unsealed and the sealer
(audit.sealing) links them later, setting `position` and `hash`.

Existing events are all chained already, in id order: they get their positions in that order, so
every hash, checkpoint and export stays valid. On PostgreSQL one trigger replaces the append-only
one of 0002: it refuses DELETE, an INSERT that arrives sealed, any UPDATE of a sealed event, and any
UPDATE of an unsealed event but its seal (position and hash set, every other column unchanged). A
deferred constraint trigger refuses, at COMMIT, a position whose predecessor does not exist.

Numbering the existing events rewrites each row once (seconds for a million events); it runs
after accounts 0006, the last migration that appended events the old way.
"""

from django.db import migrations, models

OLD_TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: %% refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""
DROP_OLD_TRIGGER_SQL = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""
NUMBER_SQL = """
UPDATE audit_auditevent SET position = numbered.position
FROM (SELECT id, row_number() OVER (ORDER BY id) AS position FROM audit_auditevent) AS numbered
WHERE audit_auditevent.id = numbered.id
"""
GUARD_SQL = """
CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are append-only: DELETE refused' USING ERRCODE = 'insufficient_privilege';
    ELSIF TG_OP = 'INSERT' THEN
        IF NEW.position IS NOT NULL OR NEW.hash IS NOT NULL THEN
            RAISE EXCEPTION 'audit events are inserted unsealed: only the sealer links them into the chain'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.position IS NOT NULL OR OLD.hash IS NOT NULL THEN
        RAISE EXCEPTION 'audit events are append-only: a sealed event cannot change'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.position IS NULL OR NEW.position < 1 OR NEW.hash IS NULL OR NEW.hash !~ '^[0-9a-f]{64}$'
        OR (NEW.id, NEW.created_at, NEW.action, NEW.actor_type, NEW.actor_id, NEW.target_type, NEW.target_id,
            NEW.client_id, NEW.outcome, NEW.source_ip, NEW.user_agent, NEW.request_id, NEW.data)
        IS DISTINCT FROM
           (OLD.id, OLD.created_at, OLD.action, OLD.actor_type, OLD.actor_id, OLD.target_type, OLD.target_id,
            OLD.client_id, OLD.outcome, OLD.source_ip, OLD.user_agent, OLD.request_id, OLD.data)
    THEN
        RAISE EXCEPTION 'audit events are append-only: an unsealed event can only be sealed'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard();

CREATE OR REPLACE FUNCTION audit_event_contiguous() RETURNS trigger AS $$
BEGIN
    IF NEW.position > 1 AND NOT EXISTS (SELECT 1 FROM audit_auditevent WHERE position = NEW.position - 1) THEN
        RAISE EXCEPTION 'audit chain positions run without gaps: %% has no predecessor', NEW.position
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER audit_event_contiguous AFTER UPDATE ON audit_auditevent
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_event_contiguous();
"""
DROP_GUARD_SQL = """
DROP TRIGGER IF EXISTS audit_event_contiguous ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_contiguous();
DROP TRIGGER IF EXISTS audit_event_guard ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_guard();
"""


def on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


def number_existing(apps, schema_editor):
    schema_editor.execute(NUMBER_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_audit_event_action_time"),
        ("accounts", "0006_usernames_and_emails"),
    ]

    operations = [
        migrations.RunPython(on_postgres(DROP_OLD_TRIGGER_SQL), on_postgres(OLD_TRIGGER_SQL)),
        migrations.AddField(
            model_name="auditevent",
            name="position",
            field=models.PositiveBigIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.RunPython(number_existing, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(condition=models.Q(position__isnull=True), fields=["id"], name="audit_event_unsealed"),
        ),
        migrations.RunPython(on_postgres(GUARD_SQL), on_postgres(DROP_GUARD_SQL)),
    ]
