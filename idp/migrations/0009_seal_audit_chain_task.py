"""The audit sealer as a django-celery-beat row, every second (audit.sealing): created once here,
then the operators' to edit in Django admin. A message that waited more than 10 s in the queue is
dropped unrun (expire_seconds): the next one seals everything waiting anyway."""

from django.db import migrations


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.get_or_create(
        name="seal-audit-chain",
        defaults={"task": "idp.tasks.seal_audit_chain", "interval": every_second, "expire_seconds": 10},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("idp", "0008_resource_servers_and_session_binding"),
        ("audit", "0005_sealed_chain"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, migrations.RunPython.noop)]
