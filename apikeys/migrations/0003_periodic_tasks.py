"""The API key sweeps as django-celery-beat rows: created once here, then the operators' to edit
(interval, enabled) in Django admin. Never deleted and recreated, so edits survive upgrades."""

from django.db import migrations

TASKS = {
    "rotate-due-apikeys": "apikeys.tasks.rotate_due_apikeys",
    "end-expired-apikeys": "apikeys.tasks.end_expired_apikeys",
}


def create_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    for name, task in TASKS.items():
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": every_minute})


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0002_rotation_and_owners"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_tasks, migrations.RunPython.noop)]
