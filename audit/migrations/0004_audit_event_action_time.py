"""An index on (action, created_at) for counting one kind of event over a time range.

On PostgreSQL it is built CONCURRENTLY: a plain CREATE INDEX would block every INSERT into the
audit table while it builds, and every token, sign-in and admin change appends a row there. The
append-only triggers refuse UPDATE and DELETE only, so building an index is unaffected by them.
Elsewhere (the development SQLite file) a plain CREATE INDEX: there is no concurrency to protect.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("audit", "0003_audit_checkpoint"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="auditevent",
            index=models.Index(fields=["action", "created_at"], name="audit_event_action_time"),
        ),
    ]
