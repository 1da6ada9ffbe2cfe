"""The stock django-oauth-toolkit provider `make bench` measures the idp against (bench/stock/,
docs/performance.md): it loads on its own settings, passes Django's checks, routes DOT's endpoints
where the benchmark sends its requests, and departs from DOT's defaults only in its scopes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
import django
from django.conf import settings
from django.core.management import call_command
from django.urls import resolve

django.setup()
call_command("check", fail_level="WARNING")
print(json.dumps({
    "views": {path: resolve(path).view_name for path in ("/o/token/", "/o/introspect/")},
    "dot_settings": sorted(settings.OAUTH2_PROVIDER),
    "debug": settings.DEBUG,
}))
"""


def stock_probe(**env: str) -> subprocess.CompletedProcess[str]:
    # Its own process: a Django process holds one settings module, and this suite's is the idp's.
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "bench.stock.settings", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


STOCK_ENV = {
    "BENCH_STOCK_SECRET_KEY": "test-only-stock-key",
    "BENCH_STOCK_ALLOWED_HOSTS": "id.bench.test",
    "DATABASE_URL": "postgres://nobody@127.0.0.1:5432/never_connected",
}


def test_stock_provider_routes_dots_token_and_introspection_endpoints():
    done = stock_probe(**STOCK_ENV)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["views"] == {"/o/token/": "oauth2_provider:token", "/o/introspect/": "oauth2_provider:introspect"}
    assert answer["dot_settings"] == ["SCOPES"]  # stock: every other DOT setting at its default
    assert answer["debug"] is False


def test_stock_provider_refuses_to_start_without_a_secret_key():
    done = stock_probe(**{**STOCK_ENV, "BENCH_STOCK_SECRET_KEY": ""})
    assert done.returncode != 0
    assert "BENCH_STOCK_SECRET_KEY" in done.stderr
