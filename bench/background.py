"""The periodic work production runs from Celery beat, as one loop beside the benchmarked server:
the audit sealer every second (idp.tasks.seal_audit_chain) and the writer of API keys' last uses
every 10 s (apikeys.tasks.record_apikey_uses), so their locks and writes are measured with the rows.

    python -m bench.background      # with the server's environment; stopped by SIGINT or SIGTERM
"""

from __future__ import annotations

import os
import signal
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "idp.settings")

import django  # noqa: E402

django.setup()

from django.db import close_old_connections  # noqa: E402

import audit  # noqa: E402
from apikeys.services import apikeys_record_uses  # noqa: E402

SEAL_EVERY = 1.0
RECORD_USES_EVERY = 10.0


def main() -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    next_record = time.monotonic() + RECORD_USES_EVERY
    while not stopping:
        close_old_connections()
        audit.seal()
        if time.monotonic() >= next_record:
            apikeys_record_uses()
            next_record = time.monotonic() + RECORD_USES_EVERY
        time.sleep(SEAL_EVERY)


if __name__ == "__main__":
    main()
