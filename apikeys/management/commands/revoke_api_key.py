from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import audit
from apikeys.models import ApiKey
from apikeys.services import apikey_revoke


class Command(BaseCommand):
    help = "Revoke an API key at once (revoking a revoked key changes nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", help="the key's public id (idpk_<id>_...)")
        parser.add_argument("--reason", default="", help="recorded in the audit trail")

    def handle(self, *args: Any, **options: Any) -> None:
        key = ApiKey.objects.filter(public_id=options["id"]).first()
        if key is None:
            raise CommandError(f"no API key {options['id']!r}")
        apikey_revoke(key_id=key.pk, actor=audit.Actor.system("revoke_api_key"), reason=options["reason"])
        self.stdout.write(f"Revoked API key {key.public_id}.")
