"""The Docker deployment as files: docker-compose.yml, the Dockerfile, deploy/Caddyfile.

No Docker engine runs here, so nothing is started: the files are parsed and checked against what
the application needs, and the compose environment is handed to `manage.py check --deploy` in a
fresh process, the way a container would see it.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

APP_SERVICES = ["migrate", "web", "worker", "beat"]
ALL_SERVICES = ["postgres", "redis", *APP_SERVICES, "proxy"]
SECRETS = [
    "IDP_SECRET_KEY",
    "IDP_KEY_ENCRYPTION_KEYS",
    "IDP_CLIENT_SECRET_PEPPER",
    "IDP_API_KEY_PEPPER",
    "POSTGRES_PASSWORD",
]

# Variables compose sets that settings.py does not read, and who reads them instead.
NOT_FOR_SETTINGS = {
    ("web", "WEB_CONCURRENCY"): "gunicorn's worker count",
}

# What an operator puts in the env file; everything else takes the compose file's defaults.
OPERATOR_ENVIRONMENT = {
    "IDP_SECRET_KEY": secrets.token_urlsafe(50),
    "IDP_KEY_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "IDP_CLIENT_SECRET_PEPPER": secrets.token_urlsafe(32),
    "IDP_API_KEY_PEPPER": secrets.token_urlsafe(32),
    "IDP_ISSUER": "https://localhost",
    "POSTGRES_PASSWORD": secrets.token_urlsafe(32),
}


# --- Reading the files ---------------------------------------------------------------------------


@functools.cache
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    """A service's environment as written, before interpolation."""
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


_REFERENCE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} and $$ escape."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        given = variables.get(name)
        if op in {":?", "?"} and not given:
            raise LookupError(f"${{{name}}} is required: {arg}")
        if op == ":-":
            return given or arg
        if op == "-":
            return arg if given is None else given
        return given or ""

    return _REFERENCE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def strings_in(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)
    elif isinstance(node, str):
        yield node


def published_ports(name: str) -> list[tuple[str, int]]:
    """(host address, host port) for each published port; "" is every interface."""
    published = []
    for port in service(name).get("ports", []):
        if isinstance(port, dict):
            published.append((port.get("host_ip", ""), int(port["published"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            published.append((parts[0], int(parts[1])))
        elif len(parts) == 2:
            published.append(("", int(parts[0])))
        # A bare container port gets a random host port on every interface.
        else:
            published.append(("", 0))
    return published


@functools.cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [arguments for found, arguments in dockerfile() if found == keyword]


def image_environment() -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions give every container."""
    env = {}
    for arguments in dockerfile_args("ENV"):
        env.update(word.split("=", 1) for word in shlex.split(arguments))
    return env


def dockerfile_cmd() -> list[str]:
    (cmd,) = dockerfile_args("CMD")
    return json.loads(cmd)  # exec form: gunicorn is PID 1 and receives SIGTERM itself


def caddy_directives() -> str:
    """The Caddyfile without its comments."""
    text = (REPO / "deploy" / "Caddyfile").read_text()
    return "\n".join(line.split("#", 1)[0].rstrip() for line in text.splitlines())


@functools.cache
def names_settings_read() -> frozenset[str]:
    """Variable names idp/settings.py passes to its env helpers, _env or os.environ."""
    readers = {"env_str", "env_bool", "env_int", "env_list"}
    names = set()
    for node in ast.walk(ast.parse((REPO / "idp" / "settings.py").read_text())):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        func = node.func
        is_reader = (
            (isinstance(func, ast.Name) and func.id in readers)
            or (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "_env")
            or (isinstance(func, ast.Attribute) and ast.unparse(func.value) == "os.environ")
        )
        if is_reader:
            names.add(node.args[0].value)
    return frozenset(names)


def manage_check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def container_environment(name: str, variables: dict[str, str]) -> dict[str, str]:
    """What a process in the service's container sees: the image's ENV, then compose's."""
    interpolated = {key: interpolate(value, variables) for key, value in environment(name).items()}
    return {**image_environment(), **interpolated}


# --- Services ------------------------------------------------------------------------------------


def test_there_are_exactly_the_expected_services():
    assert sorted(compose()["services"]) == sorted(ALL_SERVICES)


@pytest.mark.parametrize("name", ALL_SERVICES)
def test_service_has_an_image_or_a_build(name):
    assert service(name).get("image") or service(name).get("build")


# PostgreSQL numbers its patch releases MAJOR.MINOR; the others MAJOR.MINOR.PATCH.
PINNED_IMAGES = {
    "postgres": r"postgres:16\.\d+-alpine",
    "redis": r"redis:7\.\d+\.\d+-alpine",
    "proxy": r"caddy:2\.\d+\.\d+-alpine",
}


@pytest.mark.parametrize("name", PINNED_IMAGES)
def test_third_party_images_are_pinned_to_a_patch_release(name):
    assert re.fullmatch(PINNED_IMAGES[name], service(name)["image"]), service(name)["image"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_run_the_image_built_from_this_repository(name):
    assert service(name)["build"] == "."
    assert service(name)["image"] == service("web")["image"]


COMMANDS = {
    "migrate": ["sh", "-c", "python manage.py migrate --no-input && python manage.py ensure_signing_key"],
    "worker": ["celery", "-A", "idp", "worker", "--loglevel=INFO"],
    "beat": [
        "celery",
        "-A",
        "idp",
        "beat",
        "--loglevel=INFO",
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    ],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_service_runs_its_command(name):
    assert service(name)["command"] == COMMANDS[name]


def test_web_runs_gunicorn_exactly_as_the_image_does():
    command = service("web")["command"]
    assert command == dockerfile_cmd()
    assert command[:2] == ["gunicorn", "idp.wsgi"]
    assert command[command.index("--bind") + 1] == "0.0.0.0:8000"


def test_migrate_runs_once_and_is_not_restarted():
    assert service("migrate")["restart"] == "no"


# --- Environment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_one_environment(name):
    extra = {key for service_name, key in NOT_FOR_SETTINGS if service_name == name}
    shared = {key: value for key, value in environment(name).items() if key not in extra}
    assert shared == {key: str(value) for key, value in compose()["x-idp-env"].items()}


FIXED_VALUES = {"IDP_ENV": "production"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_run_in_production(name):
    for key, value in FIXED_VALUES.items():
        assert environment(name)[key] == value


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_use_the_compose_postgres_and_redis(name):
    env = container_environment(name, OPERATOR_ENVIRONMENT)
    database = urlsplit(env["DATABASE_URL"])
    assert (database.scheme, database.hostname, database.port, database.path) == ("postgres", "postgres", 5432, "/idp")
    assert database.username == service("postgres")["environment"]["POSTGRES_USER"]
    assert "${POSTGRES_PASSWORD:-}@" in environment(name)["DATABASE_URL"]
    cache, broker = urlsplit(env["REDIS_URL"]), urlsplit(env["CELERY_BROKER_URL"])
    assert (cache.scheme, cache.hostname, cache.port) == ("redis", "redis", 6379)
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    # Separate databases: clearing the cache must not drop queued tasks.
    assert cache.path != broker.path


def _secret_settings() -> list[tuple[str, str]]:
    return [
        (name, key)
        for name in ALL_SERVICES
        for key in environment(name)
        if key in SECRETS or re.search(r"SECRET|PASSWORD|PEPPER|_KEYS?$", key)
    ]


@pytest.mark.parametrize(("name", "key"), _secret_settings())
def test_secrets_come_from_the_environment_with_no_default(name, key):
    # Exactly one reference and nothing else: no literal, and no default a deployment could keep.
    assert re.fullmatch(r"\$\{(\w+):-\}", environment(name)[key]), environment(name)[key]


@pytest.mark.parametrize("name", APP_SERVICES)
@pytest.mark.parametrize(
    "key", ["IDP_SECRET_KEY", "IDP_KEY_ENCRYPTION_KEYS", "IDP_CLIENT_SECRET_PEPPER", "IDP_API_KEY_PEPPER", "IDP_ISSUER"]
)
def test_required_settings_come_from_the_environment(name, key):
    assert environment(name)[key] == f"${{{key}:-}}"


def test_compose_interpolates_with_no_variable_set():
    # `docker compose up -d postgres redis` must work for a developer without an env file, and
    # compose interpolates the whole file for every command: no ${VAR:?} anywhere.
    for text in strings_in(compose()):
        assert "$" not in interpolate(text, {}), text


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_set_only_variables_that_settings_read(name):
    unread = {key for key in environment(name) if key not in names_settings_read()}
    assert unread == {key for service_name, key in NOT_FOR_SETTINGS if service_name == name}


def test_compose_environment_passes_the_production_deploy_check():
    # Settings refuse to load in production without any variable they require, so this passing on
    # exactly the container's environment shows compose provides them all. One service stands for
    # all: they share one environment (test_app_services_share_one_environment).
    result = manage_check_deploy(container_environment("web", OPERATOR_ENVIRONMENT))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_an_unset_secret_stops_the_app_with_its_name():
    # The compose file defaults secrets to empty (see test_compose_interpolates_with_no_variable_set);
    # this is what makes that safe.
    result = manage_check_deploy(container_environment("web", {}))
    assert result.returncode != 0
    assert "IDP_SECRET_KEY must be set" in result.stderr


# --- Dependencies, ports, health -----------------------------------------------------------------


DEPENDENCIES = [
    ("migrate", "postgres", "service_healthy"),
    *(
        (name, dependency, condition)
        for name in ["web", "worker", "beat"]
        for dependency, condition in [
            ("postgres", "service_healthy"),
            ("redis", "service_healthy"),
            ("migrate", "service_completed_successfully"),
        ]
    ),
    ("proxy", "web", "service_healthy"),
]


@pytest.mark.parametrize(("name", "dependency", "condition"), DEPENDENCIES)
def test_service_waits_for_its_dependency(name, dependency, condition):
    assert service(name)["depends_on"][dependency]["condition"] == condition


def test_only_the_proxy_publishes_ports_beyond_the_host_loopback():
    public = {
        name: sorted({port for address, port in published_ports(name) if address != "127.0.0.1"})
        for name in ALL_SERVICES
    }
    assert {name: ports for name, ports in public.items() if ports} == {"proxy": [80, 443]}


@pytest.mark.parametrize(("name", "port"), [("postgres", 5432), ("redis", 6379)])
def test_data_services_publish_to_the_host_loopback_for_make_test(name, port):
    assert published_ports(name) == [("127.0.0.1", port)]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_publish_nothing(name):
    assert published_ports(name) == []


HEALTHCHECKS = {
    "postgres": "pg_isready",
    "redis": "redis-cli ping",
    # Readiness, not liveness: the proxy starts once web can serve (database, Redis, migrations, key).
    "web": "http://127.0.0.1:8000/readyz",
    # Its own node only: the default node name is celery@<hostname>.
    "worker": "app.control.ping(destination=['celery@' + socket.gethostname()], timeout=10)",
}


@pytest.mark.parametrize("name", HEALTHCHECKS)
def test_service_has_a_healthcheck(name):
    test = service(name)["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert HEALTHCHECKS[name] in " ".join(test[1:])


def test_web_healthcheck_sends_a_host_django_accepts():
    # /readyz is exempt from the https redirect (it declares https_only=False), not from ALLOWED_HOSTS.
    probe = " ".join(service("web")["healthcheck"]["test"])
    assert "IDP_ALLOWED_HOSTS" in probe and "'Host': host" in probe


def test_worker_healthcheck_pings_the_node_name_the_worker_takes():
    # Without -n/--hostname the worker is celery@<container hostname>: what the probe asks for.
    assert not {"-n", "--hostname"} & set(service("worker")["command"])
    assert "sys.exit(0 if app.control.ping(" in " ".join(service("worker")["healthcheck"]["test"])


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(number) * units[unit] for number, unit in re.findall(r"(\d+)([smh])", duration))


def test_web_is_given_its_graceful_timeout_before_sigkill():
    # docker stop sends SIGTERM, then SIGKILL after stop_grace_period (10 s unless set): gunicorn
    # needs --graceful-timeout for the requests in flight.
    command = service("web")["command"]
    graceful = int(command[command.index("--graceful-timeout") + 1])
    assert _seconds(service("web")["stop_grace_period"]) > graceful


def test_worker_is_given_its_longest_task_before_sigkill():
    # Warm shutdown lets running tasks finish; a task SIGKILLed midway waits for the broker's
    # visibility timeout before another worker gets it.
    from idp.celery import app

    app.loader.import_default_modules()
    longest = max(task.soft_time_limit or 0 for name, task in app.tasks.items() if not name.startswith("celery."))
    assert longest > 0
    assert _seconds(service("worker")["stop_grace_period"]) > longest


GUNICORN_CONFIG = "deploy/gunicorn.conf.py"


def test_every_launch_of_gunicorn_reads_the_same_config_file():
    procfile = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:"))
    for command in (dockerfile_cmd(), service("web")["command"], shlex.split(procfile.removeprefix("web:"))):
        assert command[command.index("--config") + 1] == GUNICORN_CONFIG
    assert (REPO / GUNICORN_CONFIG).is_file()
    assert GUNICORN_CONFIG.split("/")[0] + "/" not in (REPO / ".dockerignore").read_text().splitlines()


# --- The proxy -----------------------------------------------------------------------------------


def test_proxy_mounts_the_caddyfile_that_exists():
    mounts = [volume.split(":") for volume in service("proxy")["volumes"]]
    (source,) = [source for source, target, *_ in mounts if target == "/etc/caddy/Caddyfile"]
    assert (REPO / source).resolve() == REPO / "deploy" / "Caddyfile"
    assert (REPO / source).is_file()


def test_caddy_proxies_the_site_to_web():
    directives = caddy_directives()
    assert re.search(r"^\{\$IDP_DOMAIN:localhost\} \{$", directives, re.MULTILINE)
    assert re.search(r"^\s+reverse_proxy web:8000$", directives, re.MULTILINE)
    assert not re.search(r"^\s+encode\b", directives, re.MULTILINE), "no compression of token responses (BREACH)"
    assert "IDP_DOMAIN" in environment("proxy")


@pytest.mark.parametrize(
    "forbidden",
    [
        "trusted_proxies",  # Caddy would then pass on client-sent X-Forwarded-Proto, which Django trusts
        "X-Forwarded",  # Caddy sets these itself; a header_up could only weaken that
        "Strict-Transport-Security",  # Django sends HSTS: one policy, in settings.py
    ],
)
def test_caddyfile_leaves_forwarding_and_hsts_alone(forbidden):
    assert forbidden.lower() not in caddy_directives().lower()


# --- The image -----------------------------------------------------------------------------------


def test_image_is_a_pinned_python_311_slim():
    (base,) = dockerfile_args("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base


def test_image_runs_as_a_user_it_creates_not_root():
    keywords = [keyword for keyword, _ in dockerfile()]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    user = dockerfile()[last_user][1]
    assert user not in {"root", "0"} and not user.startswith(("root:", "0:"))
    assert any("useradd" in arguments and arguments.endswith(f" {user}") for arguments in dockerfile_args("RUN"))
    assert last_user < keywords.index("CMD")


def test_image_installs_the_runtime_requirements_only():
    installs = [arguments for arguments in dockerfile_args("RUN") if "pip install" in arguments]
    assert installs == ["pip install -r requirements.txt"]


def test_image_collects_static_files_for_the_production_storage():
    # Production's WhiteNoise manifest storage needs the staticfiles.json that only a production
    # collectstatic writes; a development one leaves every static link failing.
    (collect,) = [arguments for arguments in dockerfile_args("RUN") if "collectstatic" in arguments]
    assert "IDP_ENV=production" in collect
    assert "python manage.py collectstatic --no-input" in collect


def test_image_bakes_in_no_configuration():
    # Build-time placeholders live in the collectstatic RUN line only, never in ENV.
    baked = set(image_environment()) & (names_settings_read() | set(SECRETS))
    assert baked == {"IDP_ENV_FILE"}
    assert image_environment()["IDP_ENV_FILE"] == ""  # settings never read a .env file


def test_image_serves_gunicorn_on_port_8000_behind_the_proxy():
    assert dockerfile_args("EXPOSE") == ["8000"]
    cmd = dockerfile_cmd()
    assert cmd[:2] == ["gunicorn", "idp.wsgi"]
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:8000"
    assert cmd[cmd.index("--forwarded-allow-ips") + 1] == "*"
    # Trusted forwarders could otherwise set SCRIPT_NAME through a request header.
    assert "--forwarder-headers=" in cmd
    assert "--workers" not in cmd  # gunicorn reads WEB_CONCURRENCY
    assert "WEB_CONCURRENCY" in image_environment()


@pytest.mark.parametrize("pattern", [".env", ".venv/", "var/", ".git/", "**/__pycache__/", ".pytest_cache/"])
def test_build_context_leaves_out_local_state(pattern):
    assert pattern in (REPO / ".dockerignore").read_text().splitlines()
