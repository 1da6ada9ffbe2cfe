"""Settings for idp. Environments differ only by environment variables (see .env.example).

Two environments: ``IDP_ENV=production`` (the default: an unconfigured deployment gets the strict
settings) and ``IDP_ENV=development`` (what `make run` and `make test` write into the git-ignored
``.env``). Secrets have no default anywhere: a missing one stops startup with a message naming it.
"""

import binascii
import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
import limits
from cryptography.fernet import Fernet, MultiFernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_env = environ.Env()
# The git-ignored .env holds development values written by `python -m idp.devenv`; variables
# already in the process environment win over it. IDP_ENV_FILE names another file, or none when
# empty (a deployment that must see only its real environment).
_env_file = os.environ.get("IDP_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    _env.read_env(_env_file, overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    """A string from the environment; without a default, a missing value stops startup."""
    value: str | None = _env.str(name, default=None)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set in the environment (see .env.example).")
        return default
    return value


def env_bool(name: str, *, default: bool) -> bool:
    """A boolean spelled 1/0, true/false, yes/no or on/off; anything else stops startup."""
    raw = _env.str(name, default=None)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0 (true/false), not {raw!r}.")


def env_int(name: str, *, default: int, minimum: int = 0) -> int:
    raw = _env.str(name, default=None)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}.")
    return value


def env_list(name: str, *, default: list[str]) -> list[str]:
    raw = _env.str(name, default=None)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


IDP_ENV = env_str("IDP_ENV", default="production")
if IDP_ENV not in {"production", "development"}:
    raise ImproperlyConfigured(f"IDP_ENV must be 'production' or 'development', not {IDP_ENV!r}.")
PRODUCTION = IDP_ENV == "production"

# Refused with IDP_ENV=production (idp.checks), as are SQLite, a process-local cache, a filesystem
# broker, an issuer that is not https and no allowed hosts: the settings here only read values.
DEBUG = env_bool("IDP_DEBUG", default=False)

SECRET_KEY = env_str("IDP_SECRET_KEY")
# Fernet keys (comma-separated, newest first) that encrypt signing keys at rest. MultiFernet
# decrypts with any of them, so a new key can be put in front and old rows re-encrypted.
KEY_ENCRYPTION_KEYS = env_list("IDP_KEY_ENCRYPTION_KEYS", default=[])
if not KEY_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("IDP_KEY_ENCRYPTION_KEYS must be set in the environment (see .env.example).")
try:
    MultiFernet([Fernet(key) for key in KEY_ENCRYPTION_KEYS])
except (ValueError, binascii.Error):
    raise ImproperlyConfigured(
        "IDP_KEY_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes each); generate one with "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    ) from None
# Pepper of the keyed hash (HMAC-SHA256) that client secrets are stored under.
CLIENT_SECRET_PEPPER = env_str("IDP_CLIENT_SECRET_PEPPER")
API_KEY_PEPPER = env_str("IDP_API_KEY_PEPPER")

# The issuer is the server root. Required in production; in development the request's own scheme
# and host are the issuer, so a server started on any local port is a valid issuer for that port.
ISSUER = env_str("IDP_ISSUER", default="").rstrip("/")

if PRODUCTION:
    ALLOWED_HOSTS = env_list("IDP_ALLOWED_HOSTS", default=[])
else:
    ALLOWED_HOSTS = env_list("IDP_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "idp.admin_apps.IdpAdminConfig",  # Django admin, behind our sign-in and its second factor (idp.admin_site)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served as our own static files
    "corsheaders",
    "csp",
    "oauth2_provider",
    "django_celery_beat",
    "axes",
    # Second factors (idp.mfa): django-otp's device base, django-otp-webauthn's passkeys.
    "django_otp",
    "django_otp_webauthn",
    "idp",
    "apikeys",
    "accounts",
    "audit",
]

MIDDLEWARE = [
    # Outermost: counts and times every answer, those of the middleware below too (idp.ops.metrics).
    "idp.ops.metrics.RequestMetricsMiddleware",
    "audit.context.AuditContextMiddleware",  # first: every response, errors too, carries X-Request-ID
    "idp.ops.logs.RequestLogMiddleware",  # inside it: each request line carries the request id and source IP
    "idp.http.middleware.SecurityMiddleware",  # Django's, the HTTPS redirect as each endpoint declares
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "idp.http.middleware.JsonErrorBodyMiddleware",
    "idp.http.middleware.ParameterGuardMiddleware",
    "idp.sessions.middleware.SessionMiddleware",  # Django's, plus each session's device and last activity
    "idp.http.cors.CorsMiddleware",  # django-cors-headers on the endpoints that declare cors
    "idp.http.headers.NoStoreMiddleware",
    "idp.http.headers.CSPMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before any view (and CSRF's process_view): an over-limit request costs one Redis call.
    "idp.http.middleware.RateLimitMiddleware",
    # The dashboard needs the sign-in level its user must have (idp.mfa.policy).
    "idp.http.middleware.SecondFactorRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires: turns a lockout into our page
]

ROOT_URLCONF = "idp.urls"
WSGI_APPLICATION = "idp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -----------------------------------------------------------------------------
# Embedded default (development only): a SQLite file and an in-process cache. Production refuses
# both, because several web processes must share one database and one cache.
DATABASES = {"default": _env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("IDP_DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "idp.ops.cache.RedisCache",
            "LOCATION": REDIS_URL,
            # redis-py waits 5 s by default. Token requests read clients and roles through this
            # cache (falling back to the database when it fails), and sign-in counts attempts in
            # it: a Redis that hangs should cost a request a second, not hold a worker for five.
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: with neither CELERY_BROKER_URL nor REDIS_URL, kombu's filesystem transport needs no
# server (the embedded default of `make run`); production refuses it.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = str(BASE_DIR / "var" / "broker")
    # control_folder too: kombu otherwise writes its exchange table into the working directory.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": _broker_dir,
        "data_folder_out": _broker_dir,
        "control_folder": str(BASE_DIR / "var" / "broker-control"),
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Declared by name; django-celery-beat's scheduler updates the entry in place on every start.
# Periodic tasks are rows (django_celery_beat.PeriodicTask), created once by data migrations
# (idp 0004, apikeys 0003) and then the operators' to edit in Django admin. Not listed here: beat
# rewrites every entry of this setting at each start, which would undo those edits.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# Email (API key rotation notices, password resets, e-mail verification). EMAIL_URL as django-environ
# reads it, e.g. smtp+tls://user:password@smtp.example.com:587; without it, in production, messages
# go to the worker's console.
# The config holds EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD and
# EMAIL_USE_TLS/EMAIL_USE_SSL.
# In development, without EMAIL_URL, each message is a file in var/mail/ (password reset and
# e-mail verification links are read there). django-environ's filemail:// takes the path after
# the third slash: filemail:////var/spool/idp-mail for an absolute one.
_EMAIL_URL = env_str("EMAIL_URL", default="")
if _EMAIL_URL or PRODUCTION:
    globals().update(environ.Env.email_url_config(_EMAIL_URL or "consolemail://"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(BASE_DIR / "var" / "mail")
DEFAULT_FROM_EMAIL = env_str("IDP_EMAIL_FROM", default="idp <no-reply@localhost>")

# --- Users and passwords -----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# The lockout check first: a locked-out username or address is refused before a password hash runs.
AUTHENTICATION_BACKENDS = [
    "idp.http.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    # Client secrets only (named by CLIENT_SECRET_HASHER); listed so check_password recognises it.
    "idp.keys.hashers.ClientSecretHasher",
]
# Password reset links (Django's default_token_generator, accounts.tokens) expire after this long;
# they are single-use because their hash covers the password and the last sign-in.
PASSWORD_RESET_TIMEOUT = env_int("IDP_PASSWORD_RESET_SECONDS", default=3600, minimum=300)
# E-mail verification links (accounts.tokens.email_verification_token) expire after this long.
EMAIL_VERIFICATION_TIMEOUT = env_int("IDP_EMAIL_VERIFICATION_SECONDS", default=3 * 86400, minimum=300)
# /accounts/register/: off by default (a 404). Self-registered users get no token at any client
# until their e-mail address is verified (docs/accounts-self-service.md).
SELF_REGISTRATION = env_bool("IDP_SELF_REGISTRATION", default=False)
# What a validator of this list refuses is refused wherever a password is set: the management API
# and commands (accounts.services.user_create), password reset and change, self-registration.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Second factors (idp.mfa) ------------------------------------------------------------------
# A password sign-in that needs a second factor waits this long for it (the pending sign-in, held
# in the session, never a signed-in user).
MFA_PENDING_SECONDS = env_int("IDP_MFA_PENDING_SECONDS", default=300, minimum=60)
# The name authenticator apps show above the codes.
MFA_TOTP_ISSUER = env_str("IDP_MFA_TOTP_ISSUER", default="idp")
MFA_RECOVERY_CODES = env_int("IDP_MFA_RECOVERY_CODES", default=10, minimum=4)
# Managing factors (adding, removing, new recovery codes) needs a second factor used this recently.
MFA_FRESH_SECONDS = env_int("IDP_MFA_FRESH_SECONDS", default=900, minimum=60)
# Passkeys (django-otp-webauthn). The relying party id is the issuer's host; in development,
# where the issuer is the request's own host, `localhost` (WebAuthn refuses IP addresses).
OTP_WEBAUTHN_RP_NAME = env_str("IDP_WEBAUTHN_RP_NAME", default="idp")
OTP_WEBAUTHN_RP_ID_CALLABLE = "idp.mfa.passkeys.relying_party_id"
OTP_WEBAUTHN_HELPER_CLASS = "idp.mfa.passkeys.PasskeyHelper"
# Checked by django-otp-webauthn at start-up (https, or http://localhost); the helper answers with
# the issuer's origin (in development, the request's own origin). Production's issuer is https.
OTP_WEBAUTHN_ALLOWED_ORIGINS = [ISSUER] if ISSUER.startswith("https://") else ["http://localhost"]
# Passwordless sign-in with a passkey that verifies its user (the sign-in page's passkey button).
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = env_bool("IDP_PASSKEY_SIGNIN", default=True)
OTP_WEBAUTHN_EXCEPTION_LOGGER_NAME = "idp.mfa.passkeys"
OTP_WEBAUTHN_TIMEOUT_SECONDS = 120

# --- Signing keys (idp.keys.signing) ------------------------------------------------------------
# Each algorithm has its own key chain: next (published, signs nothing) -> active -> retired
# (published until the last token it signed has expired) -> deleted. RS256 is every OpenID
# provider's baseline (OIDC Core §15.1) and signs JWT access tokens and audit checkpoints.
# How these four must relate is a system check (idp.checks.signing_schedule_check).
SIGNING_ALGORITHMS = env_list("IDP_SIGNING_ALGORITHMS", default=["RS256", "ES256", "EdDSA"])
# An active key is replaced this long after it started signing (Celery beat: rotate-signing-keys).
SIGNING_KEY_ROTATION_SECONDS = env_int("IDP_SIGNING_KEY_ROTATION_SECONDS", default=30 * 24 * 3600, minimum=3600)
# A next key is published at least this long before it signs: every relying party that honours
# the JWKS max-age has then fetched it, so no token ever names a key its verifier has not seen.
SIGNING_KEY_PREPUBLISH_SECONDS = env_int("IDP_SIGNING_KEY_PREPUBLISH_SECONDS", default=24 * 3600, minimum=60)
JWKS_MAX_AGE_SECONDS = env_int("IDP_JWKS_MAX_AGE_SECONDS", default=300, minimum=0)

# --- OAuth 2.0 / OpenID Connect (django-oauth-toolkit) ----------------------------------------
OAUTH2_PROVIDER_APPLICATION_MODEL = "idp.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "idp.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "idp.RefreshToken"
OAUTH2_PROVIDER_GRANT_MODEL = "idp.Grant"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "idp.IDToken"

OIDC_SCOPES = {
    "openid": "Sign you in with your account",
    "profile": "See your name and username",
    "email": "See your email address",
    "address": "See your postal address",
    "phone": "See your phone number",
    "roles": "See your roles in this application",
    "idp.manage": "Administer this identity provider as you (its management API)",
    "offline_access": "Keep access while you are away (refresh tokens)",
}

# Every security-relevant DOT default is restated here so the policy reads in one place.
OAUTH2_PROVIDER: dict[str, Any] = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OAUTH2_VALIDATOR_CLASS": "idp.oauth.validator.IdpValidator",
    "OIDC_SERVER_CLASS": "idp.oauth.server.Server",
    "SCOPES": OIDC_SCOPES,
    "SCOPES_BACKEND_CLASS": "idp.oauth.scopes.RegisteredScopes",
    # Lifetimes: access tokens live minutes (DOT's default is 10 hours).
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("IDP_ACCESS_TOKEN_SECONDS", default=600, minimum=60),
    "ID_TOKEN_EXPIRE_SECONDS": env_int("IDP_ID_TOKEN_SECONDS", default=600, minimum=60),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": env_int("IDP_AUTHORIZATION_CODE_SECONDS", default=60, minimum=10),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("IDP_REFRESH_TOKEN_SECONDS", default=30 * 24 * 3600, minimum=60),
    # Refresh tokens rotate on every use; a rotated token presented again revokes its whole family
    # (RFC 9700 §4.14.2). No grace period: hashed storage cannot hand the previous token back.
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    # PKCE (S256 only), required: DOT's default, restated. Our validator narrows it per client at
    # DOT's seam (idp.oauth.validator.IdpValidator.is_pkce_required): public clients and
    # confidential clients registered with require_pkce must send it; other confidential clients
    # may omit it (the OpenID certification plans send none).
    "PKCE_REQUIRED": True,
    # RFC 9700 gates, all on. COMPLIANT_BCP_RFC9700_PKCE_REQUIRED does not conflict with the
    # per-client rule: DOT's deploy check accepts a per-client callable as compliant.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    # Redirect URIs: exact match, no wildcards. Plain-http loopback redirect URIs for native apps
    # (RFC 8252 §7.3) are allowed per client by idp.models.Application; the global list names
    # https only, except in development where the provider itself is served over http.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"] if PRODUCTION else ["https", "http"],
    "ALLOW_URI_WILDCARDS": False,
    "ALLOW_LOCALHOST_LOOPBACK": False,
    # Only the authorization code flow (plus client credentials and refresh at the token endpoint).
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    # "none": public clients, which prove themselves with PKCE instead of a secret.
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
    "REQUEST_APPROVAL_PROMPT": "force",  # remembered consent is ours: idp.models.Consent
    "CLIENT_SECRET_GENERATOR_CLASS": "idp.oauth.generators.ClientSecretGenerator",
    # Opaque or RFC 9068 JWT access tokens, as each client is registered; refresh tokens are
    # always opaque (oauthlib would otherwise mint them with the access token generator).
    "ACCESS_TOKEN_GENERATOR": "idp.oauth.access_tokens.access_token_generate",
    "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    "APPLICATION_ADMIN_CLASS": "idp.admin.ClientAdmin",
    "ACCESS_TOKEN_ADMIN_CLASS": "idp.admin.AccessTokenAdmin",
    "REFRESH_TOKEN_ADMIN_CLASS": "idp.admin.RefreshTokenAdmin",
    "GRANT_ADMIN_CLASS": "idp.admin.GrantAdmin",
    "ID_TOKEN_ADMIN_CLASS": "idp.admin.IDTokenAdmin",
    "CLIENT_SECRET_HASHER": "hmac_sha256",
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": True,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    "OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS": True,
    "OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS": True,
    "OIDC_JWKS_MAX_AGE_SECONDS": JWKS_MAX_AGE_SECONDS,
    "DCR_ENABLED": False,
    "CIMD_ENABLED": False,
}

# --- DRF: the management API at /api/v1/ ------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer tokens from this provider, in the Authorization header only (RFC 6750 §2.1): never in a
    # query string, where they end up in logs, nor in a form body.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "idp.api.authentication.ApiKeyAuthentication",
        "idp.api.authentication.BearerAuthentication",
    ],
    # Each view names the permission it needs (accounts.permissions.HasPermission); a view that
    # forgets still requires a caller.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["idp.api.parsers.JSONParser"],
    # Lists: django-filter's filters and an ordering allowlist per view, limit/offset pages.
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend", "idp.api.filters.OrderingFilter"],
    "DEFAULT_PAGINATION_CLASS": "idp.api.pagination.LimitOffsetPagination",
    "DEFAULT_SCHEMA_CLASS": "idp.api.schema.AutoSchema",
    # OPTIONS would describe a view's fields to anyone allowed to call it; the schema does that.
    "DEFAULT_METADATA_CLASS": None,
    "EXCEPTION_HANDLER": "idp.http.errors.api_exception_handler",
    # api.user of IDP_RATE_LIMITS; the per-address and per-key limits run before DRF (idp.http.middleware).
    "DEFAULT_THROTTLE_CLASSES": ["idp.http.ratelimit.ApiUserThrottle"],
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "idp management API",
    "DESCRIPTION": (
        "Users, roles, permissions, role assignments and clients of this identity provider. "
        "Every call needs a bearer access token issued by this provider with scope idp.manage, "
        "and its subject (the user, or the service account of a client_credentials client) must "
        "hold the permission each operation names. Errors have the RFC 6749 shape "
        "{error, error_description}."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_NO_READ_ONLY_REQUIRED": False,
    "PATH_CONVERTER_OVERRIDES": {"object_id": int, "client_id": str},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "idp.api.schema.reject_unknown_fields"],
    # Swagger UI and its favicon from drf-spectacular-sidecar through our static files; the
    # defaults would load them from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False, "deepLinking": True},
}

# --- Input limits ------------------------------------------------------------------------------
# Any single query or form value longer than this, or holding a NUL byte, is answered 400 before a
# view sees it (idp.http.middleware.ParameterGuardMiddleware).
# Failed sign-ins for one account, or from one IP, reaching this many within the window raise an
# alert.bruteforce audit event and a WARNING log line (idp.pages.signin).
AUDIT_BRUTEFORCE_THRESHOLD = env_int("IDP_BRUTEFORCE_ALERT_THRESHOLD", default=10, minimum=2)
AUDIT_BRUTEFORCE_WINDOW_SECONDS = env_int("IDP_BRUTEFORCE_ALERT_WINDOW_SECONDS", default=600, minimum=10)

# --- Rate limits and sign-in lockout ------------------------------------------------------------
# Proxies (CIDRs, comma-separated) whose X-Forwarded-For is believed (audit.context.client_ip).
# Empty: the client address is always the connection's peer, whatever headers say.
IDP_TRUSTED_PROXIES = env_list("IDP_TRUSTED_PROXIES", default=[])
for _cidr in IDP_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"IDP_TRUSTED_PROXIES must hold CIDRs, not {_cidr!r}.") from None

# Requests allowed per moving (sliding) window, as "<group>.<key kind>": <limits' notation>. A
# burst up to the limit passes; past it, 429 with Retry-After (idp.http.ratelimit). Groups: token,
# introspect, revoke, authorize, signin (POST), api (/api/v1/), reset, register, account and resend
# (POST: idp.pages.account). Kinds: ip (every request, by
# source address), user (the signed-in session user; the API's token subject), client (requests
# that authenticated as that confidential client), client_failures (failed client authentications
# naming a client_id, per client_id and address), key (requests that an API key verified),
# key_failures (failed ones naming a key's public id, per public id and address), address (the
# e-mail address a password reset request names, hashed). Nothing a
# request merely names is charged for it: see idp.http.ratelimit.
# IDP_RATE_LIMITS overrides single entries: "token.ip=300/minute;api.key=1000/hour".
IDP_RATE_LIMITS = {
    "token.ip": "300/minute",
    "token.client": "600/minute",
    "token.client_failures": "20/minute",
    "introspect.ip": "600/minute",
    "introspect.client": "1200/minute",
    "introspect.client_failures": "20/minute",
    "revoke.ip": "300/minute",
    "revoke.client": "600/minute",
    "revoke.client_failures": "20/minute",
    "authorize.ip": "300/minute",
    "authorize.user": "120/minute",
    "signin.ip": "60/minute",
    # Account self-service (idp.pages.account): reset requests per address and per e-mail address
    # named (every request counts, whether an account has it or not), registrations per address,
    # the dashboard's password, e-mail and resend forms per address and per signed-in user.
    "reset.ip": "10/minute",
    "reset.address": "5/hour",
    "register.ip": "10/hour",
    "account.ip": "30/minute",
    "account.user": "10/minute",
    "resend.ip": "30/hour",
    "resend.user": "5/hour",
    "api.ip": "600/minute",
    "api.user": "600/minute",
    "api.key": "600/minute",
    "api.key_failures": "20/minute",
}
for _entry in env_str("IDP_RATE_LIMITS", default="").split(";"):
    if not _entry.strip():
        continue
    _name, _sep, _limit = (part.strip() for part in _entry.partition("="))
    if not _sep or _name not in IDP_RATE_LIMITS:
        raise ImproperlyConfigured(
            f"IDP_RATE_LIMITS entries are <name>=<limit> with a name among {sorted(IDP_RATE_LIMITS)}, not {_entry!r}."
        )
    try:
        limits.parse(_limit)
    except ValueError:
        raise ImproperlyConfigured(f"IDP_RATE_LIMITS: {_limit!r} is not a limit such as 300/minute.") from None
    IDP_RATE_LIMITS[_name] = _limit
# The counters live in Redis, shared by every process; the embedded default counts in-process.
IDP_RATE_LIMIT_STORAGE_URL = REDIS_URL or "memory://"

# django-axes: sign-in lockout after repeated failures, per username and (separately) per client
# address, whether or not the account exists; counters in the cache (Redis), reset on success.
AXES_ENABLED = True
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env_int("IDP_LOCKOUT_FAILURES", default=5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("IDP_LOCKOUT_COOLOFF_SECONDS", default=900, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout neither count nor extend it, so a lockout starts (and is audited) once.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "audit.context.client_ip"
AXES_LOCKOUT_CALLABLE = "idp.http.lockout.signin_locked_out"
AXES_HTTP_RESPONSE_CODE = 429
# Axes' log lines mask the username (it may be a mistyped password) and the address.
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address"]
# security.W001 looks for django.middleware.security.SecurityMiddleware by its path; ours is a
# subclass (the HTTPS redirect as each endpoint declares), and idp.checks makes sure it is there.
SILENCED_SYSTEM_CHECKS = ["security.W001"]
if not REDIS_URL:
    # The embedded default's in-process cache is axes' "invalid" cache: one process only, as intended.
    SILENCED_SYSTEM_CHECKS.append("axes.W001")

IDP_MAX_PARAMETER_LENGTH = env_int("IDP_MAX_PARAMETER_LENGTH", default=4096, minimum=256)
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
FILE_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# --- Transport, cookies and headers --------------------------------------------------------------
# Production sits behind a TLS-terminating proxy that sets X-Forwarded-Proto; the header is only
# trusted because the proxy overwrites whatever a client sent (see deploy/Caddyfile).
# Development serves plain http on loopback, so secure-only cookies would never come back.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
SECURE_SSL_REDIRECT = PRODUCTION
# Probes and the metrics scraper talk to gunicorn directly over the internal network, without the
# TLS proxy: their endpoints declare https_only=False (idp.http.policy, idp.ops.views).
SECURE_HSTS_SECONDS = 31536000 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Lax, not Strict: the authorization redirect arrives cross-site
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("IDP_SESSION_SECONDS", default=8 * 3600, minimum=300)
SESSION_COOKIE_NAME = "__Host-idp_session" if PRODUCTION else "idp_session"
# Sessions are rows the user sees and ends (idp.sessions): Django's database engine extended, the
# key stored only as its digest. Sessions of Django's default engine are not carried over.
SESSION_ENGINE = "idp.sessions.backend"

# Single logout (idp.sessions.logout): back-channel logout tokens are POSTed by a Celery task, with
# up to IDP_LOGOUT_DELIVERY_RETRIES retries after the first attempt, waiting
# IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS * 2**n (n = 0, 1, ...) between them, each attempt given
# IDP_LOGOUT_DELIVERY_TIMEOUT_SECONDS. Private, loopback, link-local and other non-public
# addresses are refused (at registration, and against the address connected to) unless
# IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES: off in production, on in development (local receivers).
IDP_LOGOUT_DELIVERY_RETRIES = env_int("IDP_LOGOUT_DELIVERY_RETRIES", default=5)
IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS = env_int("IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS", default=10, minimum=1)
IDP_LOGOUT_DELIVERY_TIMEOUT_SECONDS = env_int("IDP_LOGOUT_DELIVERY_TIMEOUT_SECONDS", default=5, minimum=1)
# The Celery queue of the deliveries; empty: the default queue.
IDP_LOGOUT_QUEUE = env_str("IDP_LOGOUT_QUEUE", default="")
IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = env_bool("IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES", default=not PRODUCTION)
CSRF_COOKIE_NAME = "__Host-idp_csrf" if PRODUCTION else "idp_csrf"
CSRF_TRUSTED_ORIGINS = [ISSUER] if ISSUER else []
CSRF_FAILURE_VIEW = "idp.http.errors.csrf_failure"
X_FRAME_OPTIONS = "DENY"

# CORS, for the endpoints a browser-based client calls across origins only: those that declare
# cors=True (token, revocation, userinfo, JWKS, discovery; idp.http.policy). Allowed: the origins
# named here plus each active client's registered allowed_origins (idp.http.cors). Never
# credentials, never "*": these endpoints take the client's own credentials in headers, and a
# cookie must never ride along.
CORS_ALLOWED_ORIGINS = env_list("IDP_CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = False
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"]
CORS_ALLOW_HEADERS = ["authorization", "content-type"]
CORS_EXPOSE_HEADERS: list[str] = []
CORS_PREFLIGHT_MAX_AGE = 600

# Content-Security-Policy (django-csp): no inline script or style anywhere, no framing. Swagger UI
# and Django admin get inline styles only (idp.http.headers.CSPMiddleware says why).
# form-action is left out on purpose: Chromium applies it to the redirects that follow a form
# POST, and the consent form's POST answers with a redirect to the client's redirect_uri, an
# origin no static list can name.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}

# --- Metrics (GET /metrics, idp.ops.metrics) ----------------------------------------------------------
# Who may scrape: clients whose address (audit.context.client_ip, so behind IDP_TRUSTED_PROXIES the
# forwarded one) is in these networks, or who present IDP_METRICS_TOKEN as a bearer token. Anyone
# else gets the 404 of an unknown path. No network by default in production: behind a reverse
# proxy on the same host that is not listed in IDP_TRUSTED_PROXIES, every visitor would come from
# loopback. Development (no proxy) allows loopback.
_METRICS_DEFAULT_NETWORKS = [] if PRODUCTION else ["127.0.0.0/8", "::1/128"]
IDP_METRICS_ALLOWED_NETWORKS = env_list("IDP_METRICS_ALLOWED_NETWORKS", default=_METRICS_DEFAULT_NETWORKS)
for _cidr in IDP_METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"IDP_METRICS_ALLOWED_NETWORKS must hold CIDRs, not {_cidr!r}.") from None
# A secret: no default. Printable ASCII without spaces, long enough not to be guessed.
IDP_METRICS_TOKEN = env_str("IDP_METRICS_TOKEN", default="")
if IDP_METRICS_TOKEN and not (
    32 <= len(IDP_METRICS_TOKEN) <= 256 and all(0x21 <= ord(ch) <= 0x7E for ch in IDP_METRICS_TOKEN)
):
    raise ImproperlyConfigured(
        "IDP_METRICS_TOKEN must be 32 to 256 printable ASCII characters without spaces: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
# Each Celery worker serves its own /metrics on this port (every interface; idp.celery), to the
# same networks and token as above. 0 (the default): no server, and the worker's counts go unread.
IDP_WORKER_METRICS_PORT = env_int("IDP_WORKER_METRICS_PORT", default=0, minimum=0)
if IDP_WORKER_METRICS_PORT > 65535:
    raise ImproperlyConfigured("IDP_WORKER_METRICS_PORT must be a TCP port (1 to 65535), or 0 for none.")

# --- Benchmark ---------------------------------------------------------------------------------
# Routes the benchmark's floor views (/bench/floor-hello, /bench/floor-db; idp.ops.bench). Only
# `make bench` turns it on, against its own throwaway database; off everywhere else.
BENCH_FLOORS = env_bool("IDP_BENCH_FLOORS", default=False)

# --- Misc ----------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # WhiteNoise serves the admin's static files from each web process: no shared volume needed.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
    if PRODUCTION
    else {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LOG_LEVEL = env_str("IDP_LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"IDP_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}.")
# Never DEBUG, whatever IDP_LOG_LEVEL says: at DEBUG oauthlib logs refresh tokens and requests,
# DOT the client ids and URIs it refuses, Django every SQL statement with its parameters (session
# keys) and the template context of a failed lookup (the API key a dashboard page shows once).
_NEVER_DEBUG = "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL
# One JSON object per line on stdout, request lines and all other records alike (idp.ops.logs).
LOGGING_CONFIG = "idp.ops.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "idp.ops.logs.json_formatter"}},
    "filters": {"routine_tasks": {"()": "idp.ops.logs.RoutineTaskFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
            "filters": ["routine_tasks"],
        },
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default configuration gives these text handlers of their own: none, here.
        "django": {"handlers": [], "level": _NEVER_DEBUG},
        # runserver's line per request repeats idp.request's, with the query string.
        "django.server": {"handlers": ["null"], "propagate": False},
        "oauthlib": {"level": _NEVER_DEBUG},
        "oauth2_provider": {"level": _NEVER_DEBUG},
    },
}
