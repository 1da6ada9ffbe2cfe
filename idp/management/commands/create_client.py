import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

import audit
from accounts.selectors import Caller
from idp.oauth import clients


class Command(BaseCommand):
    help = "Register an OAuth client. Its secret is generated here and printed once; only a hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--type", required=True, choices=["confidential", "public"])
        parser.add_argument("--grant", required=True, choices=sorted(clients.GRANT_TYPES))
        parser.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
        parser.add_argument("--post-logout-redirect-uri", action="append", default=[], dest="post_logout_redirect_uris")
        parser.add_argument("--scope", action="append", default=[], dest="scopes")
        parser.add_argument("--skip-consent", action="store_true")
        parser.add_argument("--require-pkce", action="store_true", help="require PKCE of this confidential client")
        parser.add_argument(
            "--id-token-alg", default="RS256", choices=["RS256", "ES256", "EdDSA"], help="id_token_signed_response_alg"
        )
        parser.add_argument(
            "--access-token-format",
            default="opaque",
            choices=["opaque", "jwt"],
            help="opaque (the default) or RFC 9068 JWT access tokens",
        )
        parser.add_argument(
            "--access-token-audience", default="", help="aud of its JWT access tokens (default: issuer)"
        )
        parser.add_argument(
            "--introspect",
            action="store_true",
            help="a resource server: may introspect tokens and API keys (RFC 7662), learning whose they are",
        )
        parser.add_argument(
            "--require-mfa",
            action="store_true",
            help="every sign-in to this client uses a second factor (users without one set it up first)",
        )
        parser.add_argument("--backchannel-logout-uri", default="", help="receives logout tokens (Back-Channel Logout)")
        parser.add_argument("--frontchannel-logout-uri", default="", help="framed at sign-out (Front-Channel Logout)")
        parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            issued = clients.client_create(
                name=options["name"],
                client_type=options["type"],
                grant=options["grant"],
                redirect_uris=options["redirect_uris"],
                post_logout_redirect_uris=options["post_logout_redirect_uris"],
                scopes=options["scopes"],
                skip_consent=options["skip_consent"],
                require_pkce=options["require_pkce"],
                id_token_signed_response_alg=options["id_token_alg"],
                access_token_format=options["access_token_format"],
                access_token_audience=options["access_token_audience"],
                is_resource_server=options["introspect"],
                require_mfa=options["require_mfa"],
                backchannel_logout_uri=options["backchannel_logout_uri"],
                frontchannel_logout_uri=options["frontchannel_logout_uri"],
                caller=Caller.operator(audit.Actor.system("create_client")),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        client_id = issued.application.client_id
        if options["json"]:
            self.stdout.write(json.dumps({"client_id": client_id, "client_secret": issued.client_secret}))
            return
        self.stdout.write(f"client_id:     {client_id}")
        if issued.client_secret:
            self.stdout.write(f"client_secret: {issued.client_secret}")
            self.stdout.write("The secret is shown only now; store it in your client's secret store.")
