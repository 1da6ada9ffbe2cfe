# The idp image: one image for every process (web, worker, beat, migrate); docker-compose.yml picks
# the command. Configuration comes from the environment at run time, never from the image.
FROM python:3.11.15-slim-bookworm

# IDP_ENV_FILE empty: settings read the process environment only, never a .env file (none is
# copied in, see .dockerignore; this holds even if one were).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    IDP_ENV_FILE="" \
    WEB_CONCURRENCY=2

# A system user without a login shell or home; the code below stays owned by root, so a
# compromised process cannot rewrite it.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin idp

WORKDIR /app

# Runtime pins only (requirements-dev.txt is for tests and lint). Every dependency ships a wheel,
# so no compiler is installed. Copied alone first so code changes reuse this layer.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Settings refuse to load without their secrets, so collectstatic gets throwaway values for this
# command only (not ENV: no container inherits them). IDP_ENV=production because production serves static files
# through WhiteNoise's manifest storage: its staticfiles.json is written only by a production
# collectstatic, and without it every page linking a static file fails. Nothing connects to the
# database, Redis or the issuer here; the URLs only pass the production checks.
RUN IDP_ENV=production \
    IDP_SECRET_KEY=build-only \
    IDP_CLIENT_SECRET_PEPPER=build-only \
    IDP_API_KEY_PEPPER=build-only \
    IDP_KEY_ENCRYPTION_KEYS="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
    IDP_ISSUER=https://build.invalid \
    IDP_ALLOWED_HOSTS=build.invalid \
    DATABASE_URL=postgres://build@build.invalid/build \
    REDIS_URL=redis://build.invalid:6379/0 \
    python manage.py collectstatic --no-input --verbosity 0

USER idp

EXPOSE 8000

# No HEALTHCHECK here: worker, beat and migrate run this image too and listen on nothing.
# docker-compose.yml gives the web service its own check against /healthz.
#
# Workers: gunicorn reads WEB_CONCURRENCY (default above, override at run time).
# --forwarded-allow-ips "*": the port is published to no host, so only our own containers reach
# it, and the one forwarding requests is the TLS proxy (deploy/Caddyfile), which overwrites
# X-Forwarded-*. Django itself reads only X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER).
# --forwarder-headers= (empty): a trusted peer may otherwise set SCRIPT_NAME/PATH_INFO through
# request headers, and Caddy passes a client's SCRIPT_NAME header on unchanged.
# --limit-request-*: header size limits, stated rather than left to gunicorn's defaults: a request
# line up to 8 KB, at most 100 header fields, each up to 16 KB (a long Authorization header fits,
# a 64 KB one does not); beyond them gunicorn answers 400 before Django runs.
# --config: the hooks that keep the Prometheus metrics' per-worker files (deploy/gunicorn.conf.py).
CMD ["gunicorn", "idp.wsgi", "--config", "deploy/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--forwarded-allow-ips", "*", "--forwarder-headers=", "--limit-request-line", "8190", "--limit-request-fields", "100", "--limit-request-field_size", "16384", "--graceful-timeout", "30"]
