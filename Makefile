# The two commands: `make run` serves the provider, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# make test runs on real PostgreSQL and Redis: the local servers unless told otherwise.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/idp)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/0)

.PHONY: install run test lint security check-deploy clean bench

install: $(VENV)/.installed

# Re-installs only when a requirements file changed, so it is fast when nothing did.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: install
	@mkdir -p var/broker var/broker-control var/static
	@$(BIN)/python -m idp.devenv write-env
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py ensure_signing_key
	@$(BIN)/python manage.py collectstatic --no-input --verbosity 0
	@$(BIN)/python manage.py bootstrap_demo --base-url http://127.0.0.1:$(PORT)
	IDP_PORT=$(PORT) $(BIN)/honcho start -f Procfile

test: install
	@mkdir -p var/static
	@$(BIN)/python -m idp.devenv write-env
	@DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m idp.devenv check-services
	IDP_ENV=development IDP_DB_CONN_MAX_AGE=0 DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) \
		$(BIN)/pytest $(PYTEST_ARGS)

# A third, optional command: throughput and latency under load, the server started as in
# production (docs/performance.md). Needs wrk, the local PostgreSQL and Redis; owns the database
# idp_bench and Redis database 13. Prints a table and writes it to bench/results/latest.md.
BENCH_DURATION ?= 4
BENCH_WARMUP ?= 1
BENCH_RUNS ?= 3
bench: install
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y wrk; }
	$(BIN)/python -m bench.run --duration $(BENCH_DURATION) --warmup $(BENCH_WARMUP) --runs $(BENCH_RUNS)

# mypy's django-stubs plugin imports the settings: development ones, the secrets from .env (written
# as for make test), and database and Redis URLs that are never connected to (nothing is queried).
# No incremental cache: what the plugin reads from settings and models is not tracked by it, and a
# stale cache hid errors after a settings change.
LINT_ENV := IDP_ENV=development DATABASE_URL=postgres://lint@127.0.0.1:5432/lint REDIS_URL=redis://127.0.0.1:6379/15
lint: install
	@$(BIN)/python -m idp.devenv write-env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(LINT_ENV) $(BIN)/mypy --no-incremental

# Known-vulnerable pins and high-severity findings in our code. Every pin is exact, so pip-audit
# checks both files as written (no resolver, which also means it does not follow -r) against PyPI's
# advisories; --strict fails on a pin it could not check as on a vulnerable one. Where PyPI's
# per-release JSON API is out of reach (a mirror without it), pip-audit can check nothing: it is
# skipped with a warning, or fails the run with PIP_AUDIT_REQUIRED=1. bandit fails on high-severity
# findings (its config: [tool.bandit] in pyproject.toml).
PIP_AUDIT_REQUIRED ?= 0
PIP_AUDIT_PROBE := https://pypi.org/pypi/pip/24.0/json
security: install
	@if $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30)' $(PIP_AUDIT_PROBE) 2>/dev/null; then \
		echo "$(BIN)/pip-audit --strict -r requirements.txt -r requirements-dev.txt"; \
		$(BIN)/pip-audit --strict --vulnerability-service pypi --no-deps --disable-pip --progress-spinner off -r requirements.txt -r requirements-dev.txt; \
	elif [ "$(PIP_AUDIT_REQUIRED)" = 1 ]; then \
		echo "pip-audit: PyPI's per-release JSON API ($(PIP_AUDIT_PROBE)) is out of reach: the pins cannot be audited" >&2; exit 1; \
	else \
		echo "WARNING: pip-audit skipped, the pins were NOT audited: PyPI's per-release JSON API ($(PIP_AUDIT_PROBE)) is out of reach" >&2; \
	fi
	$(BIN)/bandit -q -c pyproject.toml -r accounts apikeys audit idp --severity-level high

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
