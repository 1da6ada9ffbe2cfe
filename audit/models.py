from typing import Any, NoReturn

from django.db import models

from audit import chain


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk writes would bypass save() and delete(); they are refused the same way."""

    def _refuse(self) -> ValueError:
        return ValueError(f"{str(self.model._meta.verbose_name_plural).capitalize()} are append-only.")

    def update(self, **kwargs: Any) -> int:
        raise self._refuse()

    def delete(self) -> tuple[int, dict[str, int]]:
        raise self._refuse()


class AuditEvent(models.Model):
    """One append-only audit event. ``audit.record`` inserts it unsealed (no `position`, no
    `hash`) in the transaction of the change it describes; ``audit.seal`` later gives it its place
    in the chain, linked to the event before it by `hash` (audit.chain). The model refuses updates
    and deletes; on PostgreSQL a trigger (migration 0005) refuses every change but that one seal.
    """

    created_at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=255)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(max_length=255, blank=True, db_index=True)
    outcome = models.CharField(max_length=16, default="success")
    # Text, not inet: the hash covers the address exactly as recorded, and inet would rewrite some
    # (IPv4-mapped IPv6) on the way back.
    source_ip = models.CharField(max_length=45, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict)
    # Set once, together, by the sealer: the event's place in the chain (1-based, no gaps) and the
    # hash linking it to the event at position - 1. Null while the event waits to be sealed.
    position = models.PositiveBigIntegerField(null=True, blank=True, unique=True)
    hash = models.CharField(max_length=64, null=True, blank=True, unique=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # The sealer's queue: the unsealed events in id order, small however long the chain.
            models.Index(fields=["id"], condition=models.Q(position__isnull=True), name="audit_event_unsealed"),
            models.Index(fields=["actor_type", "actor_id"], name="audit_event_actor"),
            # Counts of one kind of event over a time range (the activity overview's hourly
            # series, the latest alerts): one index range scan per action, never the whole table.
            models.Index(fields=["action", "created_at"], name="audit_event_action_time"),
        ]

    def __str__(self) -> str:
        return f"{self.action} #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ValueError("Audit events are append-only.")

    def as_chain_event(self) -> dict[str, Any]:
        """The event as audit.chain hashes it and export_audit writes it."""
        return {
            "id": self.pk,
            "time": chain.timestamp(self.created_at),
            "action": self.action,
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "client_id": self.client_id,
            "outcome": self.outcome,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "data": self.data,
            "hash": self.hash,
        }


class AuditCheckpoint(models.Model):
    """The chain head signed at a moment: after `event_count` events, ending with event
    `last_event_id`, the last hash was `head_hash`. `jws` is the compact JWS (signed with the
    provider's signing key `kid`) an auditor checks against the published JWKS; the other columns
    are for queries. Written only through ``audit.checkpoint_store``; append-only like the events
    (the model refuses updates and deletes, and on PostgreSQL so does a trigger, migration 0003)."""

    created_at = models.DateTimeField(db_index=True)
    event_count = models.PositiveBigIntegerField(db_index=True)
    # Unique: an unchanged head is never signed twice.
    head_hash = models.CharField(max_length=64, unique=True)
    last_event_id = models.BigIntegerField()
    kid = models.CharField(max_length=64)
    jws = models.TextField()

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"checkpoint after {self.event_count} events"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Audit checkpoints are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ValueError("Audit checkpoints are append-only.")

    def as_export_line(self) -> dict[str, Any]:
        """The checkpoint as export_audit writes it: only `jws` is trusted, the rest must agree."""
        return {
            "type": "checkpoint",
            "count": self.event_count,
            "head": self.head_hash,
            "last_id": self.last_event_id,
            "created_at": chain.timestamp(self.created_at),
            "kid": self.kid,
            "jws": self.jws,
        }
