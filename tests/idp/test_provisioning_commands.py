"""The provisioning commands as scripts call them: exactly one JSON object on stdout with --json."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from accounts.models import User
from audit.models import AuditEvent
from idp.models import Application, SigningKey
from tests.factories import USER_PASSWORD


def run(command: str, *args: str, stdin: str | None = None) -> str:
    out = StringIO()
    options = {"stdout": out}
    if stdin is not None:
        options["stdin"] = StringIO(stdin)
    call_command(command, *args, **options)
    return out.getvalue()


def run_json(command: str, *args: str, stdin: str | None = None) -> dict:
    output = run(command, *args, "--json", stdin=stdin)
    assert output.count("\n") <= 1, f"exactly one line of output, got {output!r}"
    return json.loads(output)


# --- create_user ---------------------------------------------------------------------------------


def test_create_user_prints_id_and_username_and_the_password_works(db):
    body = run_json(
        "create_user",
        "--username",
        "carol",
        "--email",
        "carol@example.com",
        "--password-stdin",
        stdin=f"{USER_PASSWORD}\n",
    )

    user = User.objects.get(username="carol")
    assert body == {"id": user.pk, "username": "carol"}
    assert authenticate(username="carol", password=USER_PASSWORD) == user
    assert user.password.startswith(("argon2", "pbkdf2_sha256")), "stored as a password hash"
    assert not user.is_staff
    assert AuditEvent.objects.filter(action="user.created", target_id=str(user.pk)).count() == 1


def test_create_user_staff_flag_makes_an_admin(db):
    run_json(
        "create_user",
        "--username",
        "root2",
        "--email",
        "r@example.com",
        "--password-stdin",
        "--staff",
        stdin=USER_PASSWORD,
    )
    user = User.objects.get(username="root2")
    assert user.is_staff and user.is_superuser


@pytest.mark.parametrize(
    ("username", "email", "password", "message"),
    [
        ("dave", "dave@example.com", "Sh0rt!", "too short"),
        ("dave", "dave@example.com", "password1234", "too common"),
        ("dave", "not-an-email", USER_PASSWORD, "email"),
        ("da ve;drop", "dave@example.com", USER_PASSWORD, "username"),
        ("d" * 200, "dave@example.com", USER_PASSWORD, "at most 150"),
    ],
)
def test_create_user_refuses_bad_input_and_creates_nothing(db, username, email, password, message):
    with pytest.raises(CommandError) as refused:
        run("create_user", "--username", username, "--email", email, "--password-stdin", stdin=password)
    assert message in str(refused.value).lower()
    assert password not in str(refused.value), "the password is not echoed back"
    assert not User.objects.exists()


def test_create_user_refuses_a_taken_username(db):
    run("create_user", "--username", "erin", "--email", "erin@example.com", "--password-stdin", stdin=USER_PASSWORD)
    with pytest.raises(CommandError, match="already exists"):
        run("create_user", "--username", "erin", "--email", "e2@example.com", "--password-stdin", stdin=USER_PASSWORD)
    assert User.objects.filter(username="erin").count() == 1


# --- create_client -------------------------------------------------------------------------------


def test_create_confidential_client_returns_its_secret_once_and_stores_a_keyed_hash(db):
    body = run_json(
        "create_client",
        "--name", "Billing",
        "--type", "confidential",
        "--grant", "authorization_code",
        "--redirect-uri", "https://billing.example.com/callback",
        "--redirect-uri", "http://127.0.0.1:8765/callback",
        "--post-logout-redirect-uri", "https://billing.example.com/",
        "--scope", "openid",
        "--scope", "email",
        "--skip-consent",
    )  # fmt: skip

    assert set(body) == {"client_id", "client_secret"}
    assert len(body["client_secret"]) >= 43, "at least 256 bits, base64url"
    client = Application.objects.get(client_id=body["client_id"])
    assert client.client_secret.startswith("hmac_sha256$")
    assert body["client_secret"] not in client.client_secret
    assert client.redirect_uris.split() == ["https://billing.example.com/callback", "http://127.0.0.1:8765/callback"]
    assert client.post_logout_redirect_uris == "https://billing.example.com/"
    assert client.allowed_scopes.split() == ["openid", "email"]
    assert client.skip_authorization is True
    assert client.authorization_grant_type == "authorization-code"
    assert AuditEvent.objects.filter(action="client.created", client_id=body["client_id"]).count() == 1


def test_two_clients_never_share_a_secret(db):
    first = run_json("create_client", "--name", "A", "--type", "confidential", "--grant", "client_credentials")
    second = run_json("create_client", "--name", "B", "--type", "confidential", "--grant", "client_credentials")
    assert first["client_secret"] != second["client_secret"]
    assert first["client_id"] != second["client_id"]


def test_create_public_client_has_no_secret(db):
    body = run_json(
        "create_client",
        "--name", "Mobile",
        "--type", "public",
        "--grant", "authorization_code",
        "--redirect-uri", "http://127.0.0.1:7000/cb",
    )  # fmt: skip
    assert body["client_secret"] is None
    assert Application.objects.get(client_id=body["client_id"]).client_type == "public"


def test_create_client_without_json_says_the_secret_is_shown_once(db):
    output = run("create_client", "--name", "M2M", "--type", "confidential", "--grant", "client_credentials")
    assert "client_secret:" in output
    assert "shown only now" in output


CODE_CLIENT = ["--type", "confidential", "--grant", "authorization_code"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--type", "public", "--grant", "client_credentials"], "confidential"),
        ([*CODE_CLIENT, "--redirect-uri", "ftp://x.example/cb"], "scheme"),
        ([*CODE_CLIENT, "--redirect-uri", "http://evil.example/cb"], "must use https"),
        ([*CODE_CLIENT, "--redirect-uri", "https://x.example/cb", "--scope", "admin"], "scope"),
        ([*CODE_CLIENT, "--redirect-uri", "https://x.example/cb#frag"], "fragment"),
        (CODE_CLIENT, "redirect"),
    ],
)
def test_create_client_refuses_bad_registrations(db, arguments, message):
    with pytest.raises(CommandError) as refused:
        run("create_client", "--name", "Bad", *arguments)
    assert message in str(refused.value).lower()
    assert not Application.objects.exists()


def test_create_client_rejects_unknown_grant_types_at_the_parser(db):
    with pytest.raises(CommandError):
        run("create_client", "--name", "X", "--type", "confidential", "--grant", "password")
    assert not Application.objects.exists()


# --- ensure_signing_key and bootstrap_demo -------------------------------------------------------


def test_ensure_signing_key_is_idempotent_and_encrypts_the_private_key(db):
    first = run("ensure_signing_key")
    second = run("ensure_signing_key")
    assert first.count("Created") == 6, "an active and a next key for each of RS256, ES256 and EdDSA"
    assert "Created" not in second and second.count("Active") == 3
    chains = {(key.algorithm, key.status) for key in SigningKey.objects.all()}
    assert chains == {(alg, status) for alg in ("RS256", "ES256", "EdDSA") for status in ("active", "next")}
    for key in SigningKey.objects.all():
        assert "PRIVATE KEY" not in key.private_key_encrypted
        assert {"kid", "alg", "use", "kty"} <= set(key.public_jwk) and key.public_jwk["alg"] == key.algorithm
        assert "d" not in key.public_jwk, "the published key holds no private part"


def test_bootstrap_demo_prints_working_credentials_once(db):
    output = run("bootstrap_demo", "--base-url", "http://127.0.0.1:8123")
    password = next(line.split(":", 1)[1].strip() for line in output.splitlines() if "password:" in line)
    secret = next(line.split(":", 1)[1].strip() for line in output.splitlines() if "client_secret:" in line)

    admin = authenticate(username="demo-admin", password=password)
    assert admin is not None and admin.is_staff
    client = Application.objects.get(name="Demo client")
    assert client.client_secret.startswith("hmac_sha256$") and secret not in client.client_secret
    assert "http://127.0.0.1:8123/accounts/login/" in output

    assert run("bootstrap_demo") == "", "a database with users gets nothing new and prints nothing"
    assert User.objects.count() == 1 and Application.objects.count() == 1
