"""The writer of the API keys' last uses as a django-celery-beat row, every 10 seconds
(apikeys.usage): created once here, then the operators' to edit in Django admin. A message that
waited more than 30 s is dropped unrun (expire_seconds): the next run takes everything noted."""

from django.db import migrations


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_10_seconds, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.get_or_create(
        name="record-apikey-uses",
        defaults={"task": "apikeys.tasks.record_apikey_uses", "interval": every_10_seconds, "expire_seconds": 30},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0003_periodic_tasks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, migrations.RunPython.noop)]
