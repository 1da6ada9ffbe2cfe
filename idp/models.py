"""The OAuth/OIDC provider's data: django-oauth-toolkit's models, swapped for ours from the first
migration so later issues can add fields, plus signing keys and remembered consent."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_otp.models import Device, TimestampMixin
from oauth2_provider.models import (
    AbstractAccessToken,
    AbstractApplication,
    AbstractGrant,
    AbstractIDToken,
    AbstractRefreshToken,
    ApplicationManager,
)
from oauth2_provider.validators import AllowedURIValidator

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
USER_AGENT_MAX = 300  # enough to tell a device; the rest of a user agent says nothing more
LOGOUT_URI_MAX = 2000  # a back- or front-channel logout URI, as long as any browser takes a URL


class Digest(str):
    """A value read back from a DigestField: already hashed, never hashed again."""


class DigestField(models.CharField):
    """Stores SHA-256 of the value it is given, and hashes lookup values the same way.

    DOT stores authorization codes as given and finds them with ``Grant.objects.get(code=code)`` in
    many places. With this field every one of those lookups hashes the presented code first, so
    the database only ever holds digests (a dump of it redeems nothing) and DOT's code is unchanged.
    A plain SHA-256 suffices: codes are long random strings, not guessable passwords.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Digest | None:
        return None if value is None else Digest(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or isinstance(value, Digest):
            return value
        return Digest(hashlib.sha256(value.encode("utf-8")).hexdigest())

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        # Replace the raw value on the instance too, so it does not outlive the save in memory.
        digest = self.get_prep_value(getattr(model_instance, self.attname))
        setattr(model_instance, self.attname, digest)
        return digest


class Application(AbstractApplication):
    """A client. Adds the per-client PKCE rule, registered scopes, an on/off switch, the signing
    algorithm of its ID tokens and the format of its access tokens."""

    class AccessTokenFormat(models.TextChoices):
        OPAQUE = "opaque", "Opaque (introspect to learn what it grants)"
        JWT = "jwt", "JWT (RFC 9068, verifiable with the JWKS)"

    # OIDC Dynamic Client Registration's id_token_signed_response_alg, set by an operator.
    algorithm = models.CharField(
        "ID token signing algorithm",
        max_length=5,
        choices=[("RS256", "RS256 (RSA, SHA-256)"), ("ES256", "ES256 (ECDSA P-256)"), ("EdDSA", "EdDSA (Ed25519)")],
        default=AbstractApplication.RS256_ALGORITHM,
        help_text="id_token_signed_response_alg: ID tokens are signed with the active key of this algorithm.",
    )
    access_token_format = models.CharField(
        max_length=6,
        choices=AccessTokenFormat.choices,
        default=AccessTokenFormat.OPAQUE,
        help_text="Opaque tokens reveal nothing and are checked by introspection; JWT access tokens (RFC 9068) "
        "are signed RS256 and can be verified by a resource server with the JWKS alone.",
    )
    access_token_audience = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The aud claim of this client's JWT access tokens: the resource server they are for. "
        "Empty: this provider's issuer URL (its own API).",
    )
    require_pkce = models.BooleanField(
        default=False,
        help_text="Require PKCE (S256) from this confidential client. Public clients always need it.",
    )
    allowed_scopes = models.TextField(
        blank=True,
        default="",
        help_text="Space-separated scopes this client may be granted (least privilege).",
    )
    is_active = models.BooleanField(default=True, help_text="A disabled client can neither sign in nor get tokens.")
    require_mfa = models.BooleanField(
        "require a second factor",
        default=False,
        help_text="Every sign-in to this client uses a second factor (acr urn:idp:acr:mfa or higher); a user "
        "without one enrols before any code is issued.",
    )
    is_resource_server = models.BooleanField(
        "resource server",
        default=False,
        help_text="May introspect tokens and API keys (RFC 7662): it learns the user, roles and permissions "
        "behind any token it is shown. Only for APIs that accept this provider's tokens.",
    )
    # Secret rotation with a grace period (idp.services.client_secret_rotate): the secret before the
    # last rotation, hashed exactly like client_secret, still authenticates the client until
    # previous_client_secret_expires_at (idp.oauth.validator.IdpValidator). Never editable in forms.
    previous_client_secret = models.CharField(max_length=255, blank=True, default="", editable=False)
    previous_client_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # OpenID Connect Back-Channel and Front-Channel Logout 1.0 (idp.sessions.logout): where the
    # provider tells the client that a browser session it signed in through has ended.
    backchannel_logout_uri = models.CharField(
        "back-channel logout URI",
        max_length=LOGOUT_URI_MAX,
        blank=True,
        default="",
        help_text="Receives a signed logout token (POST) when a session that signed in here ends. https; "
        "http only for 127.0.0.1 and [::1] in development. No fragment.",
    )
    backchannel_logout_session_required = models.BooleanField(
        "back-channel logout needs the sid", default=False, help_text="The logout token always carries the sid."
    )
    frontchannel_logout_uri = models.CharField(
        "front-channel logout URI",
        max_length=LOGOUT_URI_MAX,
        blank=True,
        default="",
        help_text="Loaded in a hidden iframe of the signed-out page when a session that signed in here ends.",
    )
    frontchannel_logout_session_required = models.BooleanField(
        "front-channel logout needs iss and sid",
        default=False,
        help_text="The front-channel logout URI is loaded with the iss and sid query parameters.",
    )

    objects = ApplicationManager()

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(previous_client_secret="", previous_client_secret_expires_at__isnull=True)
                | (~models.Q(previous_client_secret="") & models.Q(previous_client_secret_expires_at__isnull=False)),
                name="idp_application_previous_secret_expires",
            )
        ]

    def natural_key(self) -> tuple[str]:
        return (self.client_id,)

    @property
    def scope_list(self) -> list[str]:
        return self.allowed_scopes.split()

    def is_usable(self, request: Any) -> bool:
        return self.is_active

    def previous_secret_accepted(self, now: datetime) -> bool:
        """Whether the secret before the last rotation still authenticates the client."""
        expires_at = self.previous_client_secret_expires_at
        return bool(self.previous_client_secret) and expires_at is not None and now < expires_at

    def get_allowed_schemes(self) -> list[str]:
        # clean() admits http only for loopback redirect URIs (RFC 8252 §7.3), so a redirect to a
        # registered http URI is a redirect to the user's own machine.
        return ["https", "http"]

    def clean(self) -> None:
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().clean()
        except ValidationError as exc:
            for field, field_errors in exc.error_dict.items():
                # DOT wants OIDC_RSA_PRIVATE_KEY in settings for RS256; our keys live in the
                # database (SigningKey), so that one complaint does not apply.
                kept = [e for e in field_errors if "OIDC_RSA_PRIVATE_KEY" not in " ".join(e.messages)]
                if kept:
                    errors[field] = kept
        # DOT checks redirect_uris only; a post-logout URI is a redirect target all the same.
        post_logout_validator = AllowedURIValidator(
            [scheme.lower() for scheme in self.get_allowed_schemes()],
            name="post logout redirect uri",
            allow_path=True,
            allow_query=True,
        )
        for uri in self.post_logout_redirect_uris.split():
            try:
                post_logout_validator(uri)
            except ValidationError as exc:
                errors.setdefault("post_logout_redirect_uris", []).extend(exc.error_list)
        for field in ("redirect_uris", "post_logout_redirect_uris"):
            for uri in getattr(self, field).split():
                parts = urlsplit(uri)
                if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
                    errors.setdefault(field, []).append(
                        ValidationError(f"{uri} must use https; plain http is allowed only for 127.0.0.1 and [::1].")
                    )
        from idp.sessions.outbound import logout_uri_problems  # it reads Application's constants

        for field in ("backchannel_logout_uri", "frontchannel_logout_uri"):
            for problem in logout_uri_problems(getattr(self, field)):
                errors.setdefault(field, []).append(ValidationError(problem))
        unknown = set(self.scope_list) - set(settings.OAUTH2_PROVIDER["SCOPES"])
        if unknown:
            errors.setdefault("allowed_scopes", []).append(
                ValidationError(f"Unknown scopes: {', '.join(sorted(unknown))}.")
            )
        if errors:
            raise ValidationError(errors)


class SessionBound(models.Model):
    """A credential issued through one browser session (OpenID Connect Front-/Back-Channel Logout's
    sid): signing that session out revokes it and nothing else. Empty for what no session issued
    (client credentials)."""

    # Not indexed: looked up only among one user's tokens (user_id is), and an index would be
    # built, locking the token tables, on every install that migrates.
    session_id = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        abstract = True


class AuthenticationBound(models.Model):
    """The authentication behind a credential issued to a user (idp.mfa.levels): when the person
    authenticated (auth_time), how (amr, RFC 8176) and at which level (acr). Copied from the
    browser session to its code, from the code to its tokens, and from a refresh token to the
    next; ID tokens and introspection tell relying parties. Empty for client credentials."""

    auth_time = models.DateTimeField(null=True, blank=True, editable=False)
    amr = models.JSONField(default=list, blank=True, editable=False)
    acr = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        abstract = True

    def authentication_copy(self, source: AuthenticationBound) -> None:
        self.auth_time, self.amr, self.acr = source.auth_time, list(source.amr), source.acr


class Grant(AbstractGrant, SessionBound, AuthenticationBound):  # noqa: DJ008 - DOT's abstract model has __str__
    """An authorization code, stored only as its SHA-256 digest (see DigestField).

    A redeemed code is kept (marked, with the access token it bought) until it expires, so that
    presenting it again is recognised as reuse and those tokens revoked (RFC 6749 §4.1.2).
    """

    code = DigestField(unique=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    access_token = models.ForeignKey(
        "idp.AccessToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(AbstractGrant.Meta):
        swappable = "OAUTH2_PROVIDER_GRANT_MODEL"


class AccessToken(AbstractAccessToken, SessionBound, AuthenticationBound):  # noqa: DJ008 - DOT's abstract model has __str__
    # The claims request parameter (OIDC Core §5.5) of the authorization that issued the token,
    # so userinfo can honour its "userinfo" member.
    claims = models.JSONField(default=dict, blank=True)
    # The jti of a JWT access token (RFC 9068), so that deleting the row - which is how DOT revokes
    # a token - can put it on the deny-list (idp.models.RevokedJti). Empty for opaque tokens.
    jti = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta(AbstractAccessToken.Meta):
        swappable = "OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL"


class RefreshToken(AbstractRefreshToken, SessionBound, AuthenticationBound):  # noqa: DJ008 - DOT's abstract model has __str__
    class Meta(AbstractRefreshToken.Meta):
        swappable = "OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL"


class IDToken(AbstractIDToken, SessionBound):  # noqa: DJ008 - DOT's abstract model has __str__
    class Meta(AbstractIDToken.Meta):
        swappable = "OAUTH2_PROVIDER_ID_TOKEN_MODEL"


class SigningKey(models.Model):
    """A key that signs ID tokens, JWT access tokens and audit checkpoints. The private half is
    stored Fernet-encrypted with a key from the environment (IDP_KEY_ENCRYPTION_KEYS); the public
    half is published in the JWKS for the key's whole life.

    Each algorithm has its own chain, moved on by idp.keys.signing: `next` (published, signs
    nothing yet) -> `active` (signs) -> `retired` (published until withdraw_at, when the last
    token it signed has expired) -> deleted."""

    class Status(models.TextChoices):
        NEXT = "next", "Next (published, not yet signing)"
        ACTIVE = "active", "Active (signing)"
        RETIRED = "retired", "Retired (published until its tokens expire)"

    class Algorithm(models.TextChoices):
        RS256 = "RS256", "RS256 (RSA 2048, SHA-256)"
        ES256 = "ES256", "ES256 (ECDSA P-256, SHA-256)"
        EDDSA = "EdDSA", "EdDSA (Ed25519)"

    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices, default=Algorithm.RS256)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    private_key_encrypted = models.TextField(editable=False)
    public_jwk = models.JSONField(editable=False)
    created_at = models.DateTimeField(default=timezone.now)  # published from this moment
    activated_at = models.DateTimeField(null=True, blank=True)
    rotate_at = models.DateTimeField(null=True, blank=True)  # an active key: when its successor takes over
    retired_at = models.DateTimeField(null=True, blank=True)
    withdraw_at = models.DateTimeField(null=True, blank=True)  # a retired key: when it leaves the JWKS

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["algorithm"], condition=models.Q(status="active"), name="idp_signingkey_one_active_per_alg"
            ),
            models.UniqueConstraint(
                fields=["algorithm"], condition=models.Q(status="next"), name="idp_signingkey_one_next_per_alg"
            ),
        ]
        # view_activity is here for want of a model of its own: the activity overview shows the
        # keys due for rotation among other things, and a Meta permission needs some model.
        permissions = [
            ("rotate_signingkey", "Can rotate signing keys now"),
            ("view_activity", "Can view the activity overview"),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid} ({self.status})"


class RevokedJti(models.Model):
    """The deny-list of revoked JWT access tokens: one row per revoked token (never one per valid
    token), kept only until the token would have expired anyway (idp.oauth.access_tokens)."""

    jti = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"revoked {self.jti}"


class Consent(models.Model):
    """A user's remembered "allow" for a client, for the scopes listed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="consents")
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="consents")
    scope = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "application"], name="idp_consent_one_per_client")]

    def __str__(self) -> str:
        return f"Consent #{self.pk}"

    def covers(self, scopes: list[str]) -> bool:
        return set(scopes) <= set(self.scope.split())


# --- Second factors (idp.mfa) ----------------------------------------------------------------------


class TotpDevice(TimestampMixin, Device):
    """An authenticator app (RFC 6238 TOTP: SHA-1, 6 digits, 30 s steps, as every app reads them).

    The seed is stored encrypted with the key ring that protects signing keys
    (idp.keys.signing.key_ring) and is decrypted only to check a code. One per user; unconfirmed
    until its first code is entered (idp.mfa.factors.totp_confirm). `last_t` is the time step of
    the last code accepted: a code of that step or any earlier one is refused, so each code works
    once (django-otp's verify_token reads the row under select_for_update).
    """

    secret_encrypted: models.TextField = models.TextField(editable=False)
    last_t: models.BigIntegerField = models.BigIntegerField(default=-1, editable=False)

    class Meta:
        verbose_name = "authenticator app"
        constraints = [models.UniqueConstraint(fields=["user"], name="idp_totpdevice_one_per_user")]

    def verify_token(self, token: Any) -> bool:
        from idp.mfa import totp

        step = totp.step_matching(self, str(token))
        if step is None:
            return False
        self.last_t = step
        self.set_last_used_timestamp(commit=False)
        self.save(update_fields=["last_t", "last_used_at"])
        return True


class RecoveryCode(models.Model):
    """One of a user's recovery codes, as its SHA-256 digest (the code is 80 random bits, shown
    once: no dictionary reaches it). Used once: `used_at` is set by a single conditional UPDATE."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = DigestField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "used_at"], name="idp_recoverycode_user_unused")]

    def __str__(self) -> str:
        return f"recovery code {self.pk} of user {self.user_id}"


# --- Browser sessions (idp.sessions) ----------------------------------------------------------------


def _session_public_id() -> str:
    return secrets.token_urlsafe(16)


class BrowserSession(AbstractBaseSession):
    """A browser session, the row behind Django's session engine (idp.sessions.backend): one per
    browser signed in, or on its way to it.

    The session key is a bearer credential (whoever presents it is signed in), so the table holds
    its SHA-256 digest only (DigestField hashes every lookup value too): a dump of this table signs
    nobody in. Pages and the API name a session by `public_id`, which says nothing of the key. The
    user, the sid (idp.oauth.sessions) and the clients signed in through the session are copied
    from the session's data each time it is saved, so they are queryable."""

    # Unique, not the primary key: admin and every URL name a row by its id, never by the digest.
    session_key = DigestField("session key digest", unique=True)
    public_id = models.CharField(max_length=32, unique=True, default=_session_public_id, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="browser_sessions"
    )
    sid = models.CharField(max_length=64, blank=True, default="", editable=False)
    client_ids = models.JSONField(default=list, blank=True, editable=False)
    user_agent = models.CharField(max_length=USER_AGENT_MAX, blank=True, default="", editable=False)
    ip_address = models.GenericIPAddressField(null=True, blank=True, editable=False)
    # The issuer the browser met (the request's own in development, IDP_ISSUER in production): the
    # iss of the ID tokens issued through the session, and so of its logout tokens.
    issuer = models.CharField(max_length=255, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_active_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "browser session"
        indexes = [models.Index(fields=["user", "-last_active_at"], name="idp_browsersession_user")]

    def __str__(self) -> str:
        return f"session {self.public_id}"

    @classmethod
    def get_session_store_class(cls) -> Any:
        from idp.sessions.backend import SessionStore

        return SessionStore


# --- Upstream OpenID Connect providers (idp.federation) --------------------------------------------


class UpstreamProvider(models.Model):
    """An upstream OpenID Connect provider (the company's directory) people may sign in through.

    The client secret it gave us is stored encrypted with the key ring that protects signing keys
    (idp.keys.signing.key_ring) and decrypted only to call its token endpoint; admin never shows
    it back. The claim-to-role mapping is `role_claim` (the ID token claim holding groups or roles)
    and the UpstreamRoleMapping rows (claim value -> local role)."""

    slug = models.SlugField(max_length=40, unique=True, help_text="In the sign-in URL: /accounts/upstream/<slug>/")
    display_name = models.CharField(max_length=100, help_text="The sign-in button reads: Continue with <name>")
    issuer = models.URLField(
        max_length=255,
        unique=True,
        help_text="Exactly as its discovery document and ID tokens give it, e.g. https://login.example.com",
    )
    client_id = models.CharField(max_length=255)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    scopes = models.CharField(max_length=255, default="openid email profile")
    is_enabled = models.BooleanField("enabled", default=False)
    trust_email = models.BooleanField(
        "trust its verified e-mail addresses",
        default=False,
        help_text="A user created from this upstream gets a verified e-mail address only when the upstream "
        "says it is verified and this is ticked.",
    )
    role_claim = models.CharField(
        max_length=100,
        blank=True,
        help_text="The ID token claim whose values map to local roles (e.g. groups or roles); empty: no mapping.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "upstream provider"
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name

    def clean(self) -> None:
        super().clean()
        self.issuer = (self.issuer or "").rstrip("/")
        if settings.PRODUCTION and not self.issuer.startswith("https://"):
            raise ValidationError({"issuer": "An upstream's issuer must be an https URL."})
        if "openid" not in self.scopes.split():
            raise ValidationError({"scopes": "The scopes must include openid."})


class UpstreamRoleMapping(models.Model):
    """One value of an upstream's role claim and the local role it grants."""

    provider = models.ForeignKey(UpstreamProvider, on_delete=models.CASCADE, related_name="role_mappings")
    value = models.CharField(max_length=200, help_text="A value of the role claim, e.g. a group name")
    role = models.ForeignKey("accounts.Role", on_delete=models.CASCADE, related_name="upstream_mappings")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "value", "role"], name="idp_upstreamrolemapping_once")
        ]

    def __str__(self) -> str:
        return f"{self.value} → {self.role}"


class UpstreamLink(models.Model):
    """A local user's identity at an upstream: its issuer and `sub` (OIDC Core §2: the pair is the
    identity; an e-mail address is not). `mapped_role_ids` are the roles the mapping granted, the
    only ones a later sign-in may take back."""

    provider = models.ForeignKey(UpstreamProvider, on_delete=models.CASCADE, related_name="links")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upstream_links")
    mapped_role_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_signin_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="idp_upstreamlink_identity_once")]

    def __str__(self) -> str:
        return f"upstream identity {self.pk} of user {self.user_id}"
