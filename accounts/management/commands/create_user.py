import json
import sys
from typing import Any, TextIO, cast

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

import audit
from accounts.services import user_create


class Command(BaseCommand):
    help = "Create a user. The password is read from standard input, never from the command line."
    stealth_options = ("stdin",)  # call_command(..., stdin=StringIO(...)), as createsuperuser does

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--password-stdin", action="store_true", required=True, help="read the password from stdin")
        parser.add_argument("--staff", action="store_true", help="make the user a staff superuser (admin access)")
        parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        stdin = cast(TextIO, options.get("stdin", sys.stdin))
        password = stdin.readline().rstrip("\r\n")
        try:
            user = user_create(
                username=options["username"],
                email=options["email"],
                password=password,
                is_staff=options["staff"],
                actor=audit.Actor.system("create_user"),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if options["json"]:
            self.stdout.write(json.dumps({"id": user.pk, "username": user.username}))
        else:
            self.stdout.write(f"Created user {user.username} (id {user.pk}).")
