"""``python manage.py export_audit [--since ISO8601]``: the audit chain as JSON Lines on stdout,
for keeping elsewhere and for checking away from the database (``verify_audit --file``).

One JSON object per line, in chain order (the format is audit.chain's, "idp-audit-export/1"):

- line 1, the header: {"type": "header", "format": "idp-audit-export/1", "issuer", "since",
  "exported_at", "position", "prev_id", "prev_hash"}. ``position`` events precede the first
  exported one; ``prev_id``/``prev_hash`` are the last of them (null and 64 zeros for a whole chain).
- an event: {"type": "event", "id", "time", "action", "actor_type", "actor_id", "target_type",
  "target_id", "client_id", "outcome", "source_ip", "user_agent", "request_id", "data", "hash"},
  where hash = SHA-256(previous hash + canonical JSON of the fields from time to data).
- a checkpoint, right after the event that made the chain ``count`` events long: {"type":
  "checkpoint", "count", "head", "last_id", "created_at", "kid", "jws"}. Only the compact JWS
  (RS256, typ audit-checkpoint+jwt, payload {"iss", "head", "count", "last_id", "iat"}) is
  trusted: it verifies against the provider's published JWKS. Checkpoints at or after the
  export's start are included, so one at ``position`` vouches for ``prev_hash``.

Seals what is committed first (the sealer's own pass, audit.seal), so the export holds every event
committed before it started; streams from the database (memory O(1)).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import audit


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since must be an ISO 8601 date or time, got {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Write the audit chain as JSON Lines to stdout: a header line (format idp-audit-export/1, "
        "position and prev_hash of the start), one line per event (id, time, action, actor, target, "
        "client_id, outcome, source_ip, user_agent, request_id, data, hash) and the signed "
        "checkpoints ({type: checkpoint, jws}) after the event each covers. Check it offline with "
        "verify_audit --file EXPORT.jsonl --jwks JWKS.json."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            metavar="ISO8601",
            help="Start with the first event recorded at or after this time (UTC when no offset is given).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = _instant(options["since"]) if options["since"] is not None else None
        audit.seal()
        for record in audit.export_records(since=since):
            self.stdout.write(json.dumps(record, separators=(",", ":")))
