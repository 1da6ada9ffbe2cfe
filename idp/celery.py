"""The Celery app: workers and beat run with Django's settings (CELERY_*), log as the web process
does, and a worker serves its own Prometheus metrics when IDP_WORKER_METRICS_PORT is set."""

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

import click
from celery import Celery, bootsteps
from celery.signals import import_modules, setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "idp.settings")

# Set in a worker that made its own metrics directory (and removes it when it exits).
_METRICS_DIRECTORY = "IDP_WORKER_METRICS_DIR_OWNED"


def _celery_program() -> str | None:
    """The Celery command this process runs ("worker", "beat", ...): Celery's command line is click.
    None outside it (a probe importing the app, a web process)."""
    context = click.get_current_context(silent=True)
    return context.command.name if context is not None else None


# Connected before the app is made: making it installs the Django fixup, whose receiver of this
# signal runs django.setup(), which imports prometheus_client; receivers run in the order connected.
@import_modules.connect
def _worker_metrics_in_files(sender: Any = None, **kwargs: Any) -> None:
    """Before a worker loads Django: with IDP_WORKER_METRICS_PORT, count in files of a directory of
    its own, which the prefork pool processes inherit with the variable. prometheus_client decides
    between files and memory once, when it is imported, so this cannot wait for worker_init."""
    if _celery_program() != "worker" or os.environ.get(_METRICS_DIRECTORY):
        return
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    if not settings.IDP_WORKER_METRICS_PORT:
        return
    if "prometheus_client" in sys.modules:
        raise ImproperlyConfigured("IDP_WORKER_METRICS_PORT: prometheus_client was loaded before the worker set it up.")
    # Always a new directory, never one inherited (PROMETHEUS_MULTIPROC_DIR may name a web server's):
    # TMPDIR chooses where. A worker killed outright leaves it behind; nothing reads it again.
    directory = tempfile.mkdtemp(prefix="idp-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_METRICS_DIRECTORY] = directory
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # never a pool process: it shares the directory with its siblings
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)


app = Celery("idp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class WorkerMetricsServer(bootsteps.StartStopStep):
    """GET /metrics of a worker, on IDP_WORKER_METRICS_PORT, served by its main process: the sum of
    the files its processes count in (idp.ops.metrics.worker_metrics_serve). A port it cannot bind
    stops the worker at start, naming the variable, rather than leaving it unwatched."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: Any = None

    def include_if(self, parent: Any) -> bool:
        return bool(os.environ.get(_METRICS_DIRECTORY))

    def start(self, parent: Any) -> None:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        from idp.ops.metrics import worker_metrics_serve

        port = settings.IDP_WORKER_METRICS_PORT
        try:
            self.server = worker_metrics_serve(port=port, directory=os.environ[_METRICS_DIRECTORY])
        except OSError as error:
            raise ImproperlyConfigured(
                f"IDP_WORKER_METRICS_PORT={port}: cannot serve metrics there ({error})."
            ) from None

    def stop(self, parent: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


app.steps["worker"].add(WorkerMetricsServer)


@setup_logging.connect
def _log_as_the_web_process_does(**kwargs: Any) -> None:
    """Celery would put its own text handler on the root logger. With a receiver here it leaves
    logging alone, and the worker and beat write the web process's JSON lines (settings.LOGGING,
    idp.ops.logs) at IDP_LOG_LEVEL; celery's --loglevel no longer applies."""
    from django.conf import settings

    from idp.ops.logs import configure

    configure(settings.LOGGING)
