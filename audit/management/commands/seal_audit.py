"""``python manage.py seal_audit [--every SECONDS]``: link the committed audit events into the hash
chain (audit.seal), once or in a loop.

The periodic task ``seal-audit-chain`` (Celery beat, every second) is the usual sealer; this command
is the same pass for an operator (after restoring a backup, before an export elsewhere) or a
dedicated loop where beat is not run. Safe beside the task: one sealer at a time, a second returns
at once.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

import audit


class Command(BaseCommand):
    help = "Seal the committed audit events into the hash chain: once, or every --every seconds until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=float, metavar="SECONDS", help="Keep sealing, this often (for example 1), until stopped."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every = options["every"]
        if every is None:
            self.stdout.write(f"sealed {audit.seal()} events")
            return
        if not 0.05 <= every <= 3600:
            raise CommandError("--every must be between 0.05 and 3600 seconds")
        try:
            while True:
                close_old_connections()
                audit.seal()
                time.sleep(every)
        except KeyboardInterrupt:
            return
