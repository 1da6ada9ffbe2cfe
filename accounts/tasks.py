"""Celery entry points for account self-service mails; each calls one service. Retried on the
failures of a mail server (SMTPException, OSError: refused or lost connections), with exponential
backoff and a cap; a retry of a mail already sent is possible (at-least-once), never a lost one."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task

from accounts.services import (
    email_changed_notice_send,
    email_verification_send,
    password_reset_send,
    registration_notice_send,
)

MAIL_TASK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (SMTPException, OSError),
    "retry_backoff": 10,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 6,
    "soft_time_limit": 60,
}


@shared_task(**MAIL_TASK)
def send_password_reset(email: str, source_ip: str | None = None) -> int:
    return password_reset_send(email=email, source_ip=source_ip)


@shared_task(**MAIL_TASK)
def send_email_verification(user_id: int) -> bool:
    return email_verification_send(user_id=user_id)


@shared_task(**MAIL_TASK)
def send_email_changed_notice(user_id: int, old_email: str) -> bool:
    return email_changed_notice_send(user_id=user_id, old_email=old_email)


@shared_task(**MAIL_TASK)
def send_registration_notice(email: str) -> bool:
    return registration_notice_send(email=email)
