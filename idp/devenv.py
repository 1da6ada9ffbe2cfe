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


def write_env() -> None:
    if ENV_FILE.exists():
        return
    fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    ENV_FILE.write_text(
        "# Written by `python -m idp.devenv write-env` for local development only. Git-ignored.\n"
        "# Throwaway values: never reuse them anywhere real.\n"
        "IDP_ENV=development\n"
        f"IDP_SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"IDP_KEY_ENCRYPTION_KEYS={fernet_key}\n"
        f"IDP_CLIENT_SECRET_PEPPER={secrets.token_urlsafe(32)}\n"
    )
    ENV_FILE.chmod(0o600)
    print(f"Wrote development secrets to {ENV_FILE.name}")


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
