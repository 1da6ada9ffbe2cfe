from celery import shared_task
from django.utils import timezone
from oauth2_provider.models import clear_expired

from idp.checkpoints import audit_checkpoint_create


@shared_task(acks_late=True, soft_time_limit=300)
def clear_expired_tokens() -> None:
    """Delete expired and revoked tokens and grants in batches (DOT's cleartokens)."""
    clear_expired()


@shared_task(acks_late=True, soft_time_limit=60)
def checkpoint_audit_chain() -> int | None:
    """Sign the audit chain's head; returns the number of events it covers (None: empty chain)."""
    checkpoint = audit_checkpoint_create(now=timezone.now())
    return checkpoint.event_count if checkpoint is not None else None
