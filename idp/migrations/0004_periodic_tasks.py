"""The token cleanup as a django-celery-beat row: created once here, then the operators' to edit
in Django admin (it used to be in CELERY_BEAT_SCHEDULE, which beat rewrites at every start)."""

from django.db import migrations


def create_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name="clear-expired-tokens", defaults={"task": "idp.tasks.clear_expired_tokens", "interval": hourly}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("idp", "0003_previous_client_secret"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_tasks, migrations.RunPython.noop)]
