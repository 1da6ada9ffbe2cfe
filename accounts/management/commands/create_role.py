import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from oauth2_provider.models import get_application_model

import audit
from accounts.services import role_create


class Command(BaseCommand):
    help = "Create a role (global, or a client's own with --client). Permissions named that do not exist are created."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--description", default="")
        parser.add_argument("--client", help="client_id of the client the role belongs to")
        parser.add_argument("--permission", action="append", default=[], dest="permissions")
        parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        application = None
        if options["client"]:
            application = get_application_model().objects.filter(client_id=options["client"]).first()
            if application is None:
                raise CommandError(f"no client with client_id {options['client']!r}")
        try:
            role = role_create(
                name=options["name"],
                description=options["description"],
                application=application,
                permissions=options["permissions"],
                actor=audit.Actor.system("create_role"),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        permissions = sorted(role.permissions.values_list("codename", flat=True))
        if options["json"]:
            body = {"id": role.pk, "name": role.name, "client_id": options["client"], "permissions": permissions}
            self.stdout.write(json.dumps(body))
        else:
            self.stdout.write(f"Created role {role} with permissions: {', '.join(permissions) or '(none)'}")
