import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

import audit
from accounts.selectors import Caller
from apikeys.models import ApiKey
from apikeys.services import apikey_rotate


class Command(BaseCommand):
    help = (
        "Rotate an API key now: prints its successor once (same owner, scopes, roles and schedule). "
        "The old key keeps working for the key's grace period."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", help="the key's public id (idpk_<id>_...)")
        parser.add_argument("--json", action="store_true", help='print {"id", "key"} as one JSON object')

    def handle(self, *args: Any, **options: Any) -> None:
        key = ApiKey.objects.filter(public_id=options["id"]).first()
        if key is None:
            raise CommandError(f"no API key {options['id']!r}")
        try:
            issued = apikey_rotate(key_id=key.pk, caller=Caller.operator(audit.Actor.system("rotate_api_key")))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if options["json"]:
            self.stdout.write(json.dumps({"id": issued.key.public_id, "key": issued.secret}))
        else:
            self.stdout.write(f"API key {issued.key.public_id} replaces {key.public_id}. Shown once, store it now:")
            self.stdout.write(issued.secret)
