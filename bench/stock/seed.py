"""Seed the stock provider's database (bench/stock/settings.py) for `make bench`, through DOT's own
models and generators: three clients with plain secrets (`hash_client_secret=False`), a user, and
access tokens of that user at the web client, stored as DOT stores the tokens it issues.

    DJANGO_SETTINGS_MODULE=bench.stock.settings python -m bench.stock.seed --tokens 1000 --out seed.json

The output file holds raw credentials: for a benchmark database only, never a real one.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.generators import generate_client_secret  # noqa: E402
from oauth2_provider.models import AccessToken, Application, set_token_value  # noqa: E402
from oauth2_provider.settings import oauth2_settings  # noqa: E402
from oauthlib.common import generate_token  # noqa: E402

SCOPE = "profile"
REDIRECT_URI = "https://rp.bench.test/callback"


def client_create(*, name: str, grant_type: str, redirect_uris: str = "") -> Application:
    """A confidential client whose secret is stored as given (plain), so `client_secret` is the raw one."""
    return Application.objects.create(
        name=name,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant_type,
        redirect_uris=redirect_uris,
        client_secret=generate_client_secret(),
        hash_client_secret=False,
    )


@transaction.atomic
def stock_seed(*, tokens: int) -> dict[str, Any]:
    """The clients, a user and `tokens` access tokens; returns the raw credentials."""
    clients = {
        "machine": client_create(name="bench machine", grant_type=Application.GRANT_CLIENT_CREDENTIALS),
        # Introspects with its id and secret (HTTP Basic), as DOT's docs configure a resource server.
        "resource_server": client_create(name="bench resource server", grant_type=Application.GRANT_CLIENT_CREDENTIALS),
        "web": client_create(
            name="bench web", grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=REDIRECT_URI
        ),
    }
    user = get_user_model().objects.create_user(username="bench")  # no password: nobody signs in
    expires = timezone.now() + timedelta(seconds=oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
    raw = [generate_token() for _ in range(tokens)]  # DOT's default generator (oauthlib's)
    rows = []
    for value in raw:
        token = AccessToken(user=user, application=clients["web"], expires=expires, scope=SCOPE)
        set_token_value(token, value)  # the token and its checksum, as DOT's issuance stores them
        rows.append(token)
    AccessToken.objects.bulk_create(rows, batch_size=1000)
    return {
        "scale": tokens,
        "clients": {
            name: {"client_id": client.client_id, "client_secret": client.client_secret}
            for name, client in clients.items()
        },
        "access_tokens": raw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, required=True, help="access tokens to store")
    parser.add_argument("--out", required=True, help="where to write the raw credentials (JSON)")
    options = parser.parse_args()
    seed = stock_seed(tokens=options.tokens)
    out = Path(options.out)
    out.touch(mode=0o600)
    out.write_text(json.dumps(seed))


if __name__ == "__main__":
    main()
