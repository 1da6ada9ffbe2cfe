"""API keys: long-lived credentials for scripts and services, stored as a keyed hash only.

A key belongs to a user (optionally for one client, whose roles it may then carry) or to a
machine client. Rotation makes a successor (``rotated_from``) and gives the old key a grace
period (``grace_ends_at``); the key format lives in ``apikeys.keyformat``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q


class KeyState(models.TextChoices):
    ACTIVE = "active", "Active"
    GRACE = "grace", "Rotated (grace period)"
    RETIRED = "retired", "Rotated (ended)"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class ApiKey(models.Model):
    public_id = models.CharField(max_length=16, unique=True, editable=False)
    # HMAC-SHA256 of the whole key under IDP_API_KEY_PEPPER (apikeys.keyformat.key_digest).
    secret_hash = models.CharField(max_length=64, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="The user the key acts as; empty for a machine client's key.",
    )
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="Without a user: the machine client that owns the key. With a user: the client the key is for, "
        "whose own roles it may carry (introspection reports it as client_id).",
    )
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=1000, blank=True, default="", help_text="Space-separated scopes.")
    roles = models.ManyToManyField("accounts.Role", blank=True, related_name="api_keys")
    created_at = models.DateTimeField(editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Rotation policy: rotate every `rotate_every` (None: only by hand); the replaced key keeps
    # working for `grace_period`, then stops.
    rotate_every = models.DurationField(null=True, blank=True)
    grace_period = models.DurationField(default=timedelta(hours=24))
    next_rotation_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="successor"
    )
    grace_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the sweep that records a key's end (grace over or expired), once.
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A successor made by the scheduler: its secret, Fernet-encrypted until the owner reveals it
    # once on the dashboard; wiped on reveal or when the predecessor's grace period ends.
    pending_secret = models.TextField(blank=True, default="", editable=False)
    # Refreshed at most once a minute per key (apikeys.selectors.apikey_verify), not per request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False) | Q(application__isnull=False), name="apikeys_apikey_has_owner"
            ),
            models.CheckConstraint(
                condition=Q(rotate_every__isnull=True) | Q(rotate_every__gte=timedelta(hours=1)),
                name="apikeys_apikey_rotate_every_min",
            ),
            models.CheckConstraint(condition=Q(grace_period__gte=timedelta(0)), name="apikeys_apikey_grace_positive"),
        ]
        indexes = [
            models.Index(
                fields=["next_rotation_at"],
                condition=Q(next_rotation_at__isnull=False),
                name="apikeys_apikey_due",
            ),
            models.Index(
                fields=["grace_ends_at"],
                condition=Q(ended_at__isnull=True, grace_ends_at__isnull=False),
                name="apikeys_apikey_in_grace",
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(ended_at__isnull=True, expires_at__isnull=False),
                name="apikeys_apikey_expiring",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def is_machine_key(self) -> bool:
        return self.user_id is None

    @property
    def scope_list(self) -> list[str]:
        return self.scope.split()

    def state(self, now: datetime) -> KeyState:
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyState.EXPIRED
        if self.grace_ends_at is not None:
            return KeyState.GRACE if now < self.grace_ends_at else KeyState.RETIRED
        return KeyState.ACTIVE

    def is_usable(self, now: datetime) -> bool:
        return self.state(now) in (KeyState.ACTIVE, KeyState.GRACE)

    def has_revealable_secret(self, now: datetime) -> bool:
        """A scheduler-made secret still waits for its owner: only until the predecessor's grace
        period ends, whether or not the sweep has wiped it yet."""
        previous = self.rotated_from
        grace_over = previous is not None and previous.grace_ends_at is not None and previous.grace_ends_at <= now
        return bool(self.pending_secret) and self.is_usable(now) and not grace_over
