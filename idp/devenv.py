"""Development helpers for the Makefile; deliberately free of Django imports (settings need the
secrets this writes).

    python -m idp.devenv write-env       # create .env with throwaway development secrets, once
    python -m idp.devenv check-services  # exit 1 with advice when PostgreSQL or Redis is down
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = BASE_DIR / ".env"


def _development_secrets() -> dict[str, str]:
    return {
        "IDP_ENV": "development",
        "IDP_SECRET_KEY": secrets.token_urlsafe(50),
        "IDP_KEY_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "IDP_CLIENT_SECRET_PEPPER": secrets.token_urlsafe(32),
        "IDP_API_KEY_PEPPER": secrets.token_urlsafe(32),
    }


def write_env() -> None:
    """Create .env, or add the variables a newer version needs to an existing one (values already
    there are never changed: they protect stored data)."""
    existing = ENV_FILE.read_text() if ENV_FILE.exists() else ""
    present = {line.split("=", 1)[0].strip() for line in existing.splitlines() if "=" in line}
    missing = {name: value for name, value in _development_secrets().items() if name not in present}
    if not missing:
        return
    header = (
        ("" if existing.endswith("\n") else "\n")
        if existing
        else "# Written by `python -m idp.devenv write-env` for local development only. Git-ignored.\n"
        "# Throwaway values: never reuse them anywhere real.\n"
    )
    with ENV_FILE.open("a") as env_file:
        env_file.write(header + "".join(f"{name}={value}\n" for name, value in missing.items()))
    ENV_FILE.chmod(0o600)
    print(f"Wrote development secrets to {ENV_FILE.name}: {', '.join(missing)}")


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def check_services() -> int:
    checks = [
        ("PostgreSQL", os.environ.get("DATABASE_URL", ""), 5432),
        ("Redis", os.environ.get("REDIS_URL", ""), 6379),
    ]
    down = [(name, url) for name, url, port in checks if not url or not _answers(url, port)]
    for name, url in down:
        print(f"{name} does not answer at {url or '(unset)'}.", file=sys.stderr)
    if down:
        print(
            "The test suite runs on real PostgreSQL and Redis. Start them with\n"
            "    POSTGRES_PASSWORD=dev-only docker compose up -d postgres redis\n"
            "    export DATABASE_URL=postgres://idp:dev-only@127.0.0.1:5432/idp\n"
            "or point DATABASE_URL and REDIS_URL at running servers.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "write-env":
        write_env()
    elif command == "check-services":
        sys.exit(check_services())
    else:
        sys.exit(__doc__)
