import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

import audit
from idp.keys.encryption import encryption_key_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored signing key and pending API key secret under the first key of "
        "IDP_KEY_ENCRYPTION_KEYS. Rotate in three steps: put a new key in front of the list on every "
        "process (IDP_KEY_ENCRYPTION_KEYS=new,old) and restart them; run this command; remove the old "
        "key. Safe to run twice; with a single key there is nothing to do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the counts as one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = encryption_key_rotate(actor=audit.Actor.system("rotate_encryption_key"))
        except ImproperlyConfigured as exc:
            raise CommandError(f"{exc}; nothing was changed") from None
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "signing_keys": result.signing_keys,
                        "apikey_secrets": result.apikey_secrets,
                        "totp_seeds": result.totp_seeds,
                        "upstream_secrets": result.upstream_secrets,
                    }
                )
            )
            return
        self.stdout.write(
            f"Re-encrypted {result.signing_keys} signing key(s), {result.apikey_secrets} pending API key "
            f"secret(s), {result.totp_seeds} authenticator app seed(s) and {result.upstream_secrets} upstream "
            "client secret(s) under the first key of "
            "IDP_KEY_ENCRYPTION_KEYS"
            + ("; the other keys can now be removed." if result.total else "; everything already was.")
        )
