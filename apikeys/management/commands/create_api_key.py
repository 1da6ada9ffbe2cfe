import json
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from oauth2_provider.models import get_application_model

import audit
from accounts.models import User
from accounts.selectors import Caller
from apikeys.services import apikey_create, apikey_role_choices


class Command(BaseCommand):
    help = (
        "Issue an API key for a user (--user), a user's key for one client (--user and --client), or a "
        "machine client's key (--client). Prints the key once; only its keyed hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="username of the owner")
        parser.add_argument("--client", help="client_id: the owner without --user, the key's client with it")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", action="append", default=[], help="a scope (repeat for several)")
        parser.add_argument("--role", action="append", default=[], help="a role the owner holds (repeatable)")
        parser.add_argument("--expires-in", type=int, metavar="DAYS", help="lifetime in days")
        parser.add_argument("--rotate-every", type=int, metavar="DAYS", help="rotate on this schedule")
        parser.add_argument(
            "--grace-hours",
            type=int,
            default=24,
            metavar="H",
            help="how long a rotated-out key keeps working (default 24, 0 = stops at once)",
        )
        parser.add_argument("--json", action="store_true", help='print {"id", "key"} as one JSON object')

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["user"] and not options["client"]:
            raise CommandError("give --user, --client or both")
        user = application = None
        if options["user"]:
            user = User.objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        if options["client"]:
            application = get_application_model().objects.filter(client_id=options["client"]).first()
            if application is None:
                raise CommandError(f"no client with client_id {options['client']!r}")
        for number, least in (("expires_in", 1), ("rotate_every", 1), ("grace_hours", 0)):
            if options[number] is not None and options[number] < least:
                raise CommandError(f"--{number.replace('_', '-')} must be at least {least}")
        roles = {role.name: role.pk for role in apikey_role_choices(user=user, application=application)}
        missing = [name for name in options["role"] if name not in roles]
        if missing:
            raise CommandError(f"the owner does not hold: {', '.join(missing)}")
        now = timezone.now()
        try:
            issued = apikey_create(
                name=options["name"],
                caller=Caller.operator(audit.Actor.system("create_api_key")),
                user=user,
                application=application,
                scopes=options["scope"],
                role_ids=[roles[name] for name in options["role"]],
                expires_at=now + timedelta(days=options["expires_in"]) if options["expires_in"] is not None else None,
                rotate_every=timedelta(days=options["rotate_every"]) if options["rotate_every"] is not None else None,
                grace_period=timedelta(hours=options["grace_hours"]),
                now=now,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if options["json"]:
            self.stdout.write(json.dumps({"id": issued.key.public_id, "key": issued.secret}))
        else:
            self.stdout.write(f"API key {issued.key.public_id} ({issued.key.name}). Shown once, store it now:")
            self.stdout.write(issued.secret)
