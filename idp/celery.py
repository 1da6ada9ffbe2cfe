import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "idp.settings")

app = Celery("idp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _log_as_the_web_process_does(**kwargs: Any) -> None:
    """Celery would put its own text handler on the root logger. With a receiver here it leaves
    logging alone, and the worker and beat write the web process's JSON lines (settings.LOGGING,
    idp.ops.logs) at IDP_LOG_LEVEL; celery's --loglevel no longer applies."""
    from django.conf import settings

    from idp.ops.logs import configure

    configure(settings.LOGGING)
