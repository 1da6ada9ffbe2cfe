from typing import Any

from django.core.management.base import BaseCommand

import audit
from idp.oauth.keys import signing_key_ensure


class Command(BaseCommand):
    help = "Create the RS256 signing key if there is no active one. Safe to run on every start."

    def handle(self, *args: Any, **options: Any) -> None:
        key, created = signing_key_ensure(actor=audit.Actor.system("ensure_signing_key"))
        self.stdout.write(f"{'Created' if created else 'Active'} signing key {key.kid}")
