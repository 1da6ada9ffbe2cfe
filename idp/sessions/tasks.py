"""Celery entry points of single logout."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from idp.sessions.logout import backchannel_logout_deliver


@shared_task(bind=True, acks_late=True, soft_time_limit=60, max_retries=None)
def deliver_backchannel_logout(self: Any, client_id: str, user_id: int, sid: str, issuer: str) -> bool:
    """POST a logout token; a transient failure (connection, timeout, 5xx) is retried up to
    IDP_LOGOUT_DELIVERY_RETRIES times, waiting IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS * 2**n. Safe
    to run twice: a second logout token for a session already ended changes nothing at the client."""
    retries = int(self.request.retries)
    will_retry = retries < settings.IDP_LOGOUT_DELIVERY_RETRIES
    outcome = backchannel_logout_deliver(
        client_id=client_id, user_id=user_id, sid=sid, issuer=issuer, attempt=retries + 1, will_retry=will_retry
    )
    if outcome.transient and will_retry:
        raise self.retry(countdown=settings.IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS * 2**retries)
    return outcome.delivered
