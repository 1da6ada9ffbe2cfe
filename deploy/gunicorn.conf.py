"""gunicorn settings that a command line cannot give: the hooks of the Prometheus metrics' files.
Every launch of the web server passes it (`--config deploy/gunicorn.conf.py`: Procfile, Dockerfile,
docker-compose.yml); the flags stay on the command lines, where they are read.

Each worker process counts its requests in its own files in PROMETHEUS_MULTIPROC_DIR, and the
scrape of /metrics, answered by whichever worker, sums every file there (idp.ops.metrics); so does
the activity overview, which says since when (IDP_GUNICORN_STARTED_AT). The directory therefore
belongs to one server: an operator may name it; otherwise each server makes its own and removes it
on exit.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from typing import Any

from gunicorn.http import wsgi as gunicorn_wsgi

_OWNED = "IDP_GUNICORN_METRICS_DIR_OWNED"

# No "Server: gunicorn" on any answer: it names the software behind the provider to anyone who
# asks (the proxy adds nothing either: deploy/Caddyfile). gunicorn has no setting for it; its
# Response writes the header from this one method, which keeps every other default header.
_gunicorn_default_headers = gunicorn_wsgi.Response.default_headers


def _default_headers_without_server(self: Any) -> list[str]:
    return [line for line in _gunicorn_default_headers(self) if not line.lower().startswith("server:")]


gunicorn_wsgi.Response.default_headers = _default_headers_without_server

# gunicorn 27 opens a control socket at one fixed path per user ($HOME/.gunicorn/gunicorn.ctl), so
# two servers on a host (tests, make bench, a second instance) would fight over it; nothing here
# uses gunicornc, and a socket not opened is one less way in.
control_socket_disable = True

# Set before any worker exists: prometheus_client decides at import time whether to count in files.
# gunicorn runs this file again on HUP; by then the variable is set and the directory is kept.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWNED] = tempfile.mkdtemp(prefix="idp-metrics-")


def on_starting(server: Any) -> None:
    """Empty the directory once, when the master starts: files of a previous run would be summed
    into this one's counters. Only prometheus_client's *.db files, in case the operator pointed it
    at a directory holding anything else."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)
    # The counts start now; the workers, forked later, inherit it (idp.ops.metrics.counting_since).
    os.environ["IDP_GUNICORN_STARTED_AT"] = str(time.time())


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: its counters stay (they are totals, and the scrape keeps summing them);
    prometheus_client drops what was only true while it lived (live gauges)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    owned = os.environ.get(_OWNED)
    if owned and owned == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(owned, ignore_errors=True)
