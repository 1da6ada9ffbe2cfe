"""The company directory for the brokered sign-in tests: a second instance of this very provider,
gunicorn as the Procfile starts it, on its own PostgreSQL database (<test database>_upstream,
created and migrated once per session with manage.py migrate, dropped at the end) and its own
Redis database (9), with an issuer of its own, a client registered for the live server's callback
and people with roles. And what the tests set up at the downstream (the live server): the
upstream provider as an operator adds it, with a role mapping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis
import requests

from tests.factories import SYSTEM
from tests.ops.processes import Server, wait_for
from tests.security.test_header_limits import REPO, procfile_web

UPSTREAM_REDIS = "redis://127.0.0.1:6379/9"
SLUG = "corp"
DISPLAY_NAME = "Corp Directory"
UPSTREAM_PASSWORD = "upstream horse battery staple"
UPSTREAM_ROLE = "corp-engineers"  # a role the directory's people hold there
LOCAL_ROLE = "engineer"  # the role the mapping grants here for it


@dataclass(frozen=True)
class Person:
    username: str
    email: str
    sub: str


def downstream_url(live_server) -> str:
    """The live server by its IPv4 address: the directory registers http redirect URIs only on
    loopback addresses (not "localhost"), and runs on [::1], so each keeps its own cookies."""
    return live_server.url.replace("://localhost:", "://127.0.0.1:")


def _free_port_v6() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return probe.getsockname()[1]


@dataclass
class UpstreamServer(Server):
    @property
    def url(self) -> str:
        return f"http://[::1]:{self.port}"


@dataclass
class Upstream:
    server: Server
    issuer: str
    client_id: str
    client_secret: str
    ada: Person  # holds UPSTREAM_ROLE, verified address
    bob: Person  # no role; his address is also a local account's in the linking tests


def _url(settings_dict: dict[str, Any], name: str) -> str:
    user = quote(settings_dict["USER"] or "", safe="")
    password = ":" + quote(settings_dict["PASSWORD"], safe="") if settings_dict["PASSWORD"] else ""
    host = settings_dict["HOST"] or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
    return f"postgres://{user}{password}{'@' if user else ''}{host}{port}/{name}"


def _admin_sql(settings_dict: dict[str, Any], *statements: str) -> None:
    with psycopg.connect(_url(settings_dict, "postgres"), autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)  # type: ignore[arg-type]


def _drop(settings_dict: dict[str, Any], name: str) -> None:
    _admin_sql(
        settings_dict,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        f'DROP DATABASE IF EXISTS "{name}"',
    )


_SETUP = """
import json
import audit
from accounts.services import role_create, role_grant, user_create
from idp.keys.rotation import signing_keys_ensure
from idp.oauth import clients
from accounts.selectors import Caller
actor = audit.Actor.system("upstream-setup")
signing_keys_ensure(actor=actor)
role = role_create(name={role!r}, permissions=[], actor=actor)
people = {{}}
for name, with_role in (("ada", True), ("bob", False)):
    user = user_create(username=name, email=name + "@corp.example", password={password!r}, actor=actor,
                       first_name=name.title(), last_name="Corp")
    user.email_verified = True
    user.save(update_fields=["email_verified"])
    if with_role:
        role_grant(role=role, user=user, actor=actor)
    people[name] = {{"username": name, "email": user.email, "sub": str(user.pk)}}
issued = clients.client_create(name="Downstream idp", client_type="confidential", grant="authorization_code",
    redirect_uris=[{callback!r}], scopes=["openid", "profile", "email", "roles"], require_pkce=True,
    caller=Caller.operator(actor))
print("SETUP " + json.dumps({{"client_id": issued.application.client_id, "client_secret": issued.client_secret,
                             "people": people}}))
"""


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _gunicorn(port: int, log_path: Path, env: dict[str, str]) -> Server:
    """gunicorn as the Procfile's web line starts it, on `port`; answering once this returns."""
    command = [word.replace("127.0.0.1:${IDP_PORT}", f"[::1]:{port}") for word in procfile_web()]
    command[0] = str(REPO / command[0])
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = UpstreamServer(process=process, port=port, log_path=log_path)

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the upstream's gunicorn exited ({process.returncode}):\n{server.log()}")
        try:
            requests.get(f"{server.url}/.well-known/openid-configuration", timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            return False
        return True

    wait_for(answers, "answer from the upstream's gunicorn", log=server.log)
    return server


def _stop(server: Server) -> None:
    """A quick shutdown (SIGINT): the directory is thrown away, nothing to drain."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)


@pytest.fixture(scope="session")
def upstream(django_db_setup, django_db_blocker, live_server, tmp_path_factory) -> Iterator[Upstream]:
    from django.db import connection

    settings_dict = connection.settings_dict
    name = f"{settings_dict['NAME']}_upstream"
    with django_db_blocker.unblock():
        _drop(settings_dict, name)
        _admin_sql(settings_dict, f'CREATE DATABASE "{name}"')
    with redis.Redis.from_url(UPSTREAM_REDIS) as client:  # the upstream's own db: limits and lockouts of earlier runs
        for pattern in ("*ratelimit*", "*axes-*", "*:idp:*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
    port = _free_port_v6()
    env = {
        **os.environ,
        "DATABASE_URL": _url(settings_dict, name),
        "IDP_DB_CONN_MAX_AGE": "0",
        "REDIS_URL": UPSTREAM_REDIS,
        "CELERY_BROKER_URL": UPSTREAM_REDIS,
        "IDP_ISSUER": f"http://[::1]:{port}",
    }
    server = None
    try:
        _manage(env, "migrate", "--noinput", "-v", "0")
        callback = f"{downstream_url(live_server)}/accounts/upstream/{SLUG}/callback/"
        out = _manage(
            env, "shell", "-c", _SETUP.format(role=UPSTREAM_ROLE, password=UPSTREAM_PASSWORD, callback=callback)
        )
        setup = json.loads(next(line for line in out.splitlines() if line.startswith("SETUP ")).removeprefix("SETUP "))
        server = _gunicorn(port, tmp_path_factory.mktemp("upstream") / "gunicorn.log", env)
        issuer = requests.get(f"{server.url}/.well-known/openid-configuration", timeout=10).json()["issuer"]
        people = {key: Person(**value) for key, value in setup["people"].items()}
        yield Upstream(
            server=server,
            issuer=issuer,
            client_id=setup["client_id"],
            client_secret=setup["client_secret"],
            ada=people["ada"],
            bob=people["bob"],
        )
    finally:
        if server is not None:
            _stop(server)
        with django_db_blocker.unblock():
            _drop(settings_dict, name)


def add_upstream(issuer: str, client_id: str, client_secret: str, **fields: Any):
    """The upstream as an operator adds it, mapping UPSTREAM_ROLE to LOCAL_ROLE (a role with no
    management permission), addresses trusted."""
    from accounts.models import Role
    from accounts.services import role_create
    from idp.federation.client import secret_encrypt
    from idp.models import UpstreamProvider, UpstreamRoleMapping

    provider = UpstreamProvider.objects.create(
        slug=fields.pop("slug", SLUG),
        display_name=fields.pop("display_name", DISPLAY_NAME),
        issuer=issuer,
        client_id=client_id,
        client_secret_encrypted=secret_encrypt(client_secret),
        scopes=fields.pop("scopes", "openid email profile roles"),
        is_enabled=fields.pop("is_enabled", True),
        trust_email=fields.pop("trust_email", True),
        role_claim=fields.pop("role_claim", "roles"),
        **fields,
    )
    role = Role.objects.filter(name=LOCAL_ROLE, application__isnull=True).first() or role_create(
        name=LOCAL_ROLE, permissions=[], actor=SYSTEM
    )
    UpstreamRoleMapping.objects.create(provider=provider, value=UPSTREAM_ROLE, role=role)
    return provider


@pytest.fixture
def corp(upstream, signing_key):
    """The downstream's configuration of the company directory."""
    return add_upstream(upstream.issuer, upstream.client_id, upstream.client_secret)


@pytest.fixture(autouse=True)
def _fast_password_hashing(fast_password_hashing):
    """MD5 for users' passwords here (tests/conftest.py says why and when not)."""
