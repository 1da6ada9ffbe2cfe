"""Celery entry points for API keys; each calls one service. Declared in beat by name
(settings.CELERY_BEAT_SCHEDULE), so the schedules show and can be edited in Django admin."""

from smtplib import SMTPException

from celery import shared_task
from django.utils import timezone

from apikeys.services import apikey_notify_rotated, apikeys_end_due, apikeys_record_uses, apikeys_rotate_due


# acks_late + reject_on_worker_lost: a worker killed mid-rotation leaves the message unacknowledged,
# so the broker delivers it again; the rotation it was making rolled back with its connection, and
# the sweep finds the key still due. Never lost, never doubled (apikeys_rotate_due).
@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=120)
def rotate_due_apikeys() -> int:
    # Each owner is told once their key's rotation has committed; the email never holds the key.
    return apikeys_rotate_due(now=timezone.now(), on_rotated=notify_rotated_apikey.delay)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=120)
def end_expired_apikeys() -> int:
    return apikeys_end_due(now=timezone.now())


@shared_task(ignore_result=True, soft_time_limit=60)
def record_apikey_uses() -> int:
    """Write the API keys' last uses noted in Redis to the database (beat: every 10 s)."""
    return apikeys_record_uses()


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=3600,
    max_retries=8,
)
def notify_rotated_apikey(key_id: int) -> bool:
    return apikey_notify_rotated(key_id=key_id)
