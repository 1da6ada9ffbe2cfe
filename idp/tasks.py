from celery import shared_task
from django.utils import timezone

import audit
from idp.keys.checkpoints import audit_checkpoint_create
from idp.keys.rotation import signing_keys_rotate_due
from idp.oauth.tokens import tokens_clear_expired
from idp.sessions.tasks import deliver_backchannel_logout  # noqa: F401 - the worker finds idp's tasks here


@shared_task(acks_late=True, soft_time_limit=300)
def clear_expired_tokens() -> int:
    """Delete expired and revoked tokens and grants in batches (DOT's cleartokens), and the
    revoked JWT access tokens that have expired since; returns how many deny-list rows went."""
    return tokens_clear_expired(now=timezone.now())


@shared_task(ignore_result=True, soft_time_limit=30)
def seal_audit_chain() -> int:
    """Link the committed audit events into the hash chain (beat: every second); returns how
    many. Safe when two run at once: the second finds the seal lock taken and returns 0."""
    return audit.seal()


@shared_task(acks_late=True, soft_time_limit=60)
def checkpoint_audit_chain() -> int | None:
    """Seal what is committed, then sign the audit chain's head; returns the number of events it
    covers (None: empty chain)."""
    checkpoint = audit_checkpoint_create(now=timezone.now())
    return checkpoint.event_count if checkpoint is not None else None


@shared_task(acks_late=True, soft_time_limit=120)
def rotate_signing_keys() -> dict[str, list[str]]:
    """Move the signing-key chains on: rotate the keys due, complete the chains, delete retired
    keys whose tokens have expired. Safe when two workers run it at once (one lock)."""
    changes = signing_keys_rotate_due(now=timezone.now(), actor=audit.Actor.system("rotate_signing_keys"))
    return {"created": changes.created, "rotated": changes.rotated, "withdrawn": changes.withdrawn}
