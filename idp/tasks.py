from celery import shared_task
from oauth2_provider.models import clear_expired


@shared_task(acks_late=True, soft_time_limit=300)
def clear_expired_tokens() -> None:
    """Delete expired and revoked tokens and grants in batches (DOT's cleartokens)."""
    clear_expired()
