import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

import audit
from accounts.models import User
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant, user_create
from idp.oauth import clients

DEMO_REDIRECT_URI = "http://127.0.0.1:8080/callback"


class Command(BaseCommand):
    help = (
        "On an empty database, create a demo admin and a demo client and print their credentials "
        "once. Does nothing when any user exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if User.objects.exists():
            return
        actor = audit.Actor.system("bootstrap_demo")
        password = secrets.token_urlsafe(12)
        admin = user_create(
            username="demo-admin", email="admin@example.com", password=password, is_staff=True, actor=actor
        )
        # The management API's permissions (the role comes from accounts' migrations; ensured here
        # too, so a database that lost it gets it back).
        role_grant(role=admin_role_ensure(actor=actor), user=admin, actor=actor)
        issued = clients.client_create(
            name="Demo client",
            client_type="confidential",
            grant="authorization_code",
            redirect_uris=[DEMO_REDIRECT_URI],
            post_logout_redirect_uris=["http://127.0.0.1:8080/"],
            scopes=["openid", "profile", "email", "roles", "offline_access", "idp.manage"],
            caller=Caller.operator(actor),
        )
        base = options["base_url"].rstrip("/")
        client_id = issued.application.client_id
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    "Demo credentials (shown once; only hashes are stored):",
                    f"  Sign in at {base}/accounts/login/",
                    "    username: demo-admin",
                    f"    password: {password}",
                    "  Demo client (confidential, authorization code):",
                    f"    client_id:     {client_id}",
                    f"    client_secret: {issued.client_secret}",
                    f"    redirect_uri:  {DEMO_REDIRECT_URI}",
                    "  Try the sign-in flow in a browser:",
                    f"    {base}/oauth/authorize/?response_type=code&client_id={client_id}"
                    f"&redirect_uri={DEMO_REDIRECT_URI}&scope=openid+profile+email&state=demo",
                    "  Management API (demo-admin holds the role idp-admin; ask for scope idp.manage):",
                    f"    docs:   {base}/api/docs/",
                    f"    schema: {base}/api/v1/schema/",
                    "=" * 72,
                    "",
                ]
            )
        )
