"""``python manage.py verify_audit [--file EXPORT.jsonl] [--jwks JWKS.json|URL]``: check the
audit chain in one pass (time O(n), memory O(1)) and name its first broken link.

Without --file it reads the database: every sealed event in chain order, and every stored checkpoint, whose
JWS must verify against the published keys (this provider's JWKS, or --jwks) and sign the hash the
chain really has at that length. A checkpoint counting more events than the chain holds reveals
deleted rows or a truncated table. With --file it checks an export_audit file the same way,
offline: the checkpoints verify against --jwks (a file, or the provider's JWKS URL).

Prints "ok: N events, head <hash>" and exits 0, or exits non-zero naming the break. Events recorded
but not yet sealed by the sealer (audit.sealing, every second) are counted on a line of their own.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from jwcrypto import jwk

import audit
from audit import chain
from idp.keys.checkpoints import audit_checkpoint_verify, jwks_parse, jwks_published

JWKS_FETCH_TIMEOUT_SECONDS = 10
# The sealer runs every second: events older than this waiting for it mean it does not run.
UNSEALED_WARNING_SECONDS = 60


def _jwks(source: str) -> jwk.JWKSet:
    try:
        if source.startswith(("https://", "http://")):
            with urllib.request.urlopen(source, timeout=JWKS_FETCH_TIMEOUT_SECONDS) as reply:  # noqa: S310
                text = reply.read()
        else:
            text = Path(source).read_bytes()
        return jwks_parse(text)
    except (OSError, ValueError) as error:
        raise CommandError(f"--jwks {source}: {error}") from None


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain and its signed checkpoints, from the database or offline from "
        "an export_audit file (--file, with --jwks); name the first broken link and exit non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", metavar="EXPORT.jsonl", help="An export_audit file to check ('-': stdin).")
        parser.add_argument(
            "--jwks",
            metavar="JWKS.json|URL",
            help="The keys the checkpoints must verify against: a JWKS file or URL (the provider's "
            "/.well-known/jwks.json). Required with --file; without it, the keys in the database.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"] is not None:
            if options["jwks"] is None:
                raise CommandError("--file needs --jwks: the JWKS the checkpoints must verify against")
            keys = _jwks(options["jwks"])
            state = self._verify_file(options["file"], keys)
        else:
            keys = _jwks(options["jwks"]) if options["jwks"] is not None else jwks_published()
            state = self._verify(audit.export_records(), keys)
        if state.broken is not None:
            # Lines number the export file; from the database, position and event id say where.
            broken = state.broken if options["file"] is not None else replace(state.broken, line=None)
            raise CommandError(f"audit chain broken at {broken}")
        self.stdout.write(f"ok: {state.count} events, head {state.head}")
        if state.checkpoints == 0:
            self.stdout.write("no checkpoint: no signature vouches for these events yet")
        else:
            self.stdout.write(f"{state.checkpoints} checkpoints verified, the latest after event {state.signed_count}")
            if state.count > state.signed_count:
                self.stdout.write(f"{state.count - state.signed_count} events after it are not yet signed")
        if options["file"] is None:
            waiting, oldest = audit.unsealed()
            if waiting:
                age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
                self.stdout.write(
                    f"{waiting} events recorded but not yet sealed into the chain, the oldest {age:.0f} s ago"
                    + ("" if age < UNSEALED_WARNING_SECONDS else ": is the sealer running (Celery beat and a worker)?")
                )
        if state.withdrawn:
            self.stdout.write(
                f"{state.withdrawn} earlier checkpoints are signed by keys since withdrawn from the JWKS; "
                "a later verified checkpoint covers their events"
            )

    def _verify_file(self, name: str, keys: jwk.JWKSet) -> chain.Walk:
        if name == "-":
            return self._verify(chain.read_export(sys.stdin), keys)
        try:
            with open(name, encoding="utf-8") as lines:
                return self._verify(chain.read_export(lines), keys)
        except OSError as error:
            raise CommandError(f"--file {name}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"--file {name}: not UTF-8 text") from None

    @staticmethod
    def _verify(records: Iterable[dict[str, Any]], keys: jwk.JWKSet) -> chain.Walk:
        return chain.verify_export(records, checkpoint_payload=lambda token: audit_checkpoint_verify(token, keys=keys))
