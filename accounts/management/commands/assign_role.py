import json
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Model
from oauth2_provider.models import get_application_model

import audit
from accounts.models import Role, RoleAssignment, User
from accounts.services import role_grant, role_revoke


class Command(BaseCommand):
    help = "Give a role to a user, a group or a machine client's service account (or take it back with --revoke)."

    def add_arguments(self, parser: CommandParser) -> None:
        holder = parser.add_mutually_exclusive_group(required=True)
        holder.add_argument("--user", help="username")
        holder.add_argument("--group", help="Django group name")
        holder.add_argument("--service-client", help="client_id of a client_credentials client")
        parser.add_argument("--role", required=True, help="role name")
        parser.add_argument("--client", help="client_id the role belongs to (for a client role)")
        parser.add_argument("--revoke", action="store_true")
        parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        application = None
        if options["client"]:
            application = get_application_model().objects.filter(client_id=options["client"]).first()
            if application is None:  # never fall back to the global role of the same name
                raise CommandError(f"no client with client_id {options['client']!r}")
        role = Role.objects.filter(name=options["role"], application=application).first()
        if role is None:
            raise CommandError(
                f"no role {options['role']!r}" + (f" for client {options['client']}" if options["client"] else "")
            )
        holder = self._holder(options)
        actor = audit.Actor.system("assign_role")
        try:
            if options["revoke"]:
                assignment = RoleAssignment.objects.filter(role=role, **holder).first()
                if assignment is not None:
                    role_revoke(assignment=assignment, actor=actor)
            else:
                role_grant(role=role, actor=actor, **holder)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        held = RoleAssignment.objects.filter(role=role, **holder).exists()
        if options["json"]:
            name, value = next((key, options[key]) for key in ("user", "group", "service_client") if options[key])
            self.stdout.write(
                json.dumps({"role": role.name, "client_id": options["client"], name: value, "assigned": held})
            )
        else:
            self.stdout.write(f"{'Assigned' if held else 'Not assigned'}: {role}")

    @staticmethod
    def _holder(options: dict[str, Any]) -> dict[str, Any]:
        found: Model | None
        if options["user"]:
            found = User.objects.filter(username=options["user"]).first()
            kind = "user"
        elif options["group"]:
            found = Group.objects.filter(name=options["group"]).first()
            kind = "group"
        else:
            found = get_application_model().objects.filter(client_id=options["service_client"]).first()
            kind = "client"
        if found is None:
            raise CommandError(f"no such {kind}")
        return {kind: found}
