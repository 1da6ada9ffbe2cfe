"""Seed a throwaway database for the benchmark (`make bench`, bench/run.py, docs/performance.md).

Clients, the user and their role go through the services, as an operator would make them. The
credentials the load generator presents go in by bulk insert, never through the API: a million
of them through the token endpoint would take longer than the benchmark itself. Every stored
value is made by the app's own code: `set_token_value` and the models' checksum and digest fields
hash tokens and codes exactly as issuance does, `apikeys.keyformat` mints and digests keys.

    manage.py bench_seed --scale 1000 --single-use 0 --out base.json
    manage.py bench_seed --extend base.json --scale 1000000 --single-use 40000 --out full.json

The output file holds raw credentials: for a benchmark database only, never a real one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone
from oauth2_provider.models import set_token_value
from oauthlib.common import generate_token

import audit
from accounts.models import User
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant, user_create
from apikeys.keyformat import key_digest, key_new, public_id_new
from apikeys.models import ApiKey
from idp.models import AccessToken, Application, Grant, RefreshToken
from idp.oauth import clients

ACTOR = audit.Actor.system("bench_seed")
REDIRECT_URI = "https://rp.bench.test/callback"
# The tokens introspection and userinfo present: a signed-in user's, at a web client.
ACCESS_SCOPE = "openid profile"
CODE_SCOPE = "openid profile offline_access"
KEY_SCOPE = "idp.manage"
# At most this many of the stored tokens and keys are known (raw values in the output file); the
# rest are fillers nobody can present, there only to make the tables big.
KNOWN_MAX = 1000
# Seeded credentials outlive any benchmark run; what expiry each grant really gets is the app's
# business when it issues them.
LIFETIME = timedelta(days=1)
BATCH = 5000
# SHA-256 of a salt (the %s) and the row number i of generate_series, still to be encoded: distinct
# random-looking digests for filler rows, made in the database.
_DIGEST_OF_I = "encode(sha256(convert_to(%s || i::text, 'UTF8'))"


class Command(BaseCommand):
    help = "Seed clients, a user, tokens, API keys, codes and refresh tokens for the benchmark (make bench)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", type=int, required=True, help="Access tokens and API keys stored (each).")
        parser.add_argument(
            "--single-use",
            type=int,
            default=100,
            help="Authorization codes and refresh tokens to seed (each); every request of those rows uses one up.",
        )
        parser.add_argument("--out", required=True, help="Where to write the raw credentials (JSON).")
        parser.add_argument(
            "--extend", help="The output of an earlier run on this database: add fillers up to --scale, and codes."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scale, single_use = options["scale"], options["single_use"]
        if scale < 1 or single_use < 0:
            raise CommandError("--scale must be at least 1 and --single-use at least 0")
        now = timezone.now()
        if options["extend"]:
            seed = json.loads(Path(options["extend"]).read_text())
            if scale < seed["scale"]:
                raise CommandError(f"--scale {scale} is below the {seed['scale']} already stored")
        else:
            seed = self._base(scale, now=now)
        web = Application.objects.get(client_id=seed["clients"]["web"]["client_id"])
        user = User.objects.get(pk=seed["user"]["id"])
        # After _base has committed: the fillers go in on other connections, which must see the user.
        self._fill(scale - seed["scale"], web=web, user=user, now=now)
        seed["scale"] = scale
        seed["codes"] += self._codes(single_use, web=web, user=user, verifier=seed["code_verifier"], now=now)
        seed["refresh_tokens"] += self._refresh_tokens(single_use, web=web, user=user, now=now)
        with connection.cursor() as cursor:
            # A production database has planner statistics; a freshly bulk-loaded one has none yet.
            for model in (AccessToken, RefreshToken, Grant, ApiKey):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        out = Path(options["out"])
        out.touch(mode=0o600)
        out.write_text(json.dumps(seed))
        self.stdout.write(
            f"Seeded {scale} access tokens and API keys ({len(seed['access_tokens'])} known), "
            f"{len(seed['codes'])} codes and {len(seed['refresh_tokens'])} refresh tokens available."
        )

    @transaction.atomic
    def _base(self, scale: int, *, now: Any) -> dict[str, Any]:
        """The clients, the user and the known tokens and keys (up to KNOWN_MAX of `scale`); returns
        the output file's content, whose "scale" says how many tokens and keys are stored so far."""
        machine = clients.client_create(
            name="bench machine",
            client_type=Application.CLIENT_CONFIDENTIAL,
            grant="client_credentials",
            scopes=["profile"],
            caller=Caller.operator(ACTOR),
        )
        web = clients.client_create(
            name="bench web",
            client_type=Application.CLIENT_CONFIDENTIAL,
            grant="authorization_code",
            redirect_uris=[REDIRECT_URI],
            scopes=CODE_SCOPE.split(),
            skip_consent=True,
            caller=Caller.operator(ACTOR),
        )
        resource_server = clients.client_create(
            name="bench resource server",
            client_type=Application.CLIENT_CONFIDENTIAL,
            grant="client_credentials",
            is_resource_server=True,
            caller=Caller.operator(ACTOR),
        )
        username = f"bench-{secrets.token_hex(4)}"
        user = user_create(
            username=username, email=f"{username}@bench.test", password=secrets.token_urlsafe(24), actor=ACTOR
        )
        user.first_name, user.last_name = "Bench", "User"
        user.save(update_fields=["first_name", "last_name"])
        # The role an API key for the management API carries; introspection then lists its
        # permissions, as it would for a real key.
        role = admin_role_ensure(actor=ACTOR)
        role_grant(role=role, user=user, actor=ACTOR)

        known = min(scale, KNOWN_MAX)
        raw_tokens = [generate_token() for _ in range(known)]
        tokens = []
        for raw in raw_tokens:
            token = AccessToken(
                user=user, application=web.application, scope=ACCESS_SCOPE, expires=now + LIFETIME, claims={}
            )
            set_token_value(token, raw)
            tokens.append(token)
        AccessToken.objects.bulk_create(tokens, batch_size=BATCH)

        raw_keys = []
        keys = []
        for _ in range(known):
            public_id = public_id_new()
            raw = key_new(public_id)
            raw_keys.append(raw)
            keys.append(
                ApiKey(
                    public_id=public_id,
                    secret_hash=key_digest(raw),
                    user=user,
                    name="bench key",
                    scope=KEY_SCOPE,
                    created_at=now,
                )
            )
        ApiKey.objects.bulk_create(keys, batch_size=BATCH)
        ApiKey.roles.through.objects.bulk_create(
            [ApiKey.roles.through(apikey_id=key.pk, role_id=role.pk) for key in keys], batch_size=BATCH
        )
        return {
            "scale": known,
            "clients": {
                "machine": {"client_id": machine.application.client_id, "client_secret": machine.client_secret},
                "web": {
                    "client_id": web.application.client_id,
                    "client_secret": web.client_secret,
                    "redirect_uri": REDIRECT_URI,
                },
                "resource_server": {
                    "client_id": resource_server.application.client_id,
                    "client_secret": resource_server.client_secret,
                },
            },
            "user": {"id": user.pk, "username": user.username},
            "code_verifier": secrets.token_urlsafe(48),
            "access_tokens": raw_tokens,
            "api_keys": raw_keys,
            "codes": [],
            "refresh_tokens": [],
        }

    def _fill(self, count: int, *, web: Application, user: Any, now: Any) -> None:
        """`count` more access tokens and API keys that nobody holds: random digests, so each
        table grows as if that many credentials had been issued. The two tables fill at once,
        each on its own connection (a thread each: the work is in the database)."""
        if count <= 0:
            return
        salt = secrets.token_hex(16)  # fillers of another call never collide with these
        with ThreadPoolExecutor(max_workers=2) as pool:
            filled = [
                pool.submit(_on_own_connection, _fill_access_tokens, count, web=web, user=user, now=now, salt=salt),
                pool.submit(_on_own_connection, _fill_api_keys, count, user=user, now=now, salt=salt),
            ]
            for future in filled:
                future.result()

    def _codes(self, count: int, *, web: Application, user: Any, verifier: str, now: Any) -> list[str]:
        """Unredeemed authorization codes with a PKCE S256 challenge of `verifier`."""
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")
        raw_codes = [generate_token() for _ in range(count)]
        Grant.objects.bulk_create(
            [
                Grant(
                    user=user,
                    code=raw,
                    application=web,
                    expires=now + LIFETIME,
                    redirect_uri=REDIRECT_URI,
                    scope=CODE_SCOPE,
                    code_challenge=challenge,
                    code_challenge_method=Grant.CODE_CHALLENGE_S256,
                )
                for raw in raw_codes
            ],
            batch_size=BATCH,
        )
        return raw_codes

    def _refresh_tokens(self, count: int, *, web: Application, user: Any, now: Any) -> list[str]:
        """Live refresh tokens, each with the access token it was issued with and its own family,
        as a code exchange leaves them."""
        tokens = []
        for _ in range(count):
            token = AccessToken(user=user, application=web, scope=CODE_SCOPE, expires=now + LIFETIME, claims={})
            set_token_value(token, generate_token())
            tokens.append(token)
        AccessToken.objects.bulk_create(tokens, batch_size=BATCH)
        raw_refresh = [generate_token() for _ in range(count)]
        refresh = []
        for raw, token in zip(raw_refresh, tokens, strict=True):
            row = RefreshToken(user=user, application=web, access_token=token, token_family=uuid.uuid4())
            set_token_value(row, raw)
            refresh.append(row)
        RefreshToken.objects.bulk_create(refresh, batch_size=BATCH)
        return raw_refresh


def _on_own_connection(fill: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        fill(*args, **kwargs)
    finally:
        connection.close()  # this thread's connection; the command's own stays open


def _fill_access_tokens(count: int, *, web: Application, user: Any, now: Any, salt: str) -> None:
    token = AccessToken(user=user, application=web, scope=ACCESS_SCOPE, expires=now + LIFETIME, claims={})
    _insert_series(token, count, {"token_checksum": (f"{_DIGEST_OF_I}, 'hex')", [salt])})


def _fill_api_keys(count: int, *, user: Any, now: Any, salt: str) -> None:
    key = ApiKey(user=user, name="bench filler", scope=KEY_SCOPE, created_at=now)
    # Public ids as the format has them: 12 characters from [0-9A-Za-z] (72 random-looking bits).
    public_id = f"translate(substr({_DIGEST_OF_I}, 'base64'), 1, 12), '+/', 'xy')"
    stored = ApiKey.objects.count()
    missing = count
    while missing > 0:  # a public id collision (about one in 10^10) is skipped, then made up
        _insert_series(
            key,
            missing,
            {
                "public_id": (public_id, [f"{salt}{missing}"]),
                "secret_hash": (f"{_DIGEST_OF_I}, 'hex')", [f"{salt}{missing}secret"]),
            },
            conflict="public_id",
        )
        missing = stored + count - ApiKey.objects.count()


def _insert_series(
    template: models.Model, count: int, generated: dict[str, tuple[str, list[str]]], conflict: str | None = None
) -> None:
    """INSERT ... SELECT ... FROM generate_series(1, count) AS i: `count` copies of the unsaved
    `template`, except the `generated` columns: column -> (SQL expression of i, its parameters).
    Server-side, so a million rows take seconds; the columns come from the model, so a new field
    with a default needs no change here."""
    columns, values, params = [], [], []
    order_by = None
    for field in template._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in generated:
            expression, expression_params = generated[field.column]
            values.append(expression)
            params.extend(expression_params)
            # Rows arriving in the order of the (unique, indexed) first generated column fill its
            # index about a third faster than random ones; lookups cost the same afterwards.
            order_by = order_by or len(columns)
        else:
            values.append(f"CAST(%s AS {field.db_type(connection)})")
            params.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    table = connection.ops.quote_name(template._meta.db_table)
    # Only identifiers from the models and our own expressions are formatted in; values are bound.
    select = f"SELECT {', '.join(values)} FROM generate_series(1, %s) AS i ORDER BY {order_by}"  # noqa: S608
    sql = f"INSERT INTO {table} ({', '.join(columns)}) {select}"
    if conflict:
        sql += f" ON CONFLICT ({connection.ops.quote_name(conflict)}) DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, count])
