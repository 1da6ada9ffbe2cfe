"""The audit chain checkpoint as a django-celery-beat row, every 15 minutes: created once here,
then the operators' to edit in Django admin (never deleted and recreated)."""

from django.db import migrations


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15_minutes, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="checkpoint-audit-chain",
        defaults={"task": "idp.tasks.checkpoint_audit_chain", "interval": every_15_minutes},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("idp", "0004_periodic_tasks"),
        ("audit", "0003_audit_checkpoint"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, migrations.RunPython.noop)]
