"""Every write to accounts goes through here."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.db import transaction

import audit
from accounts.models import User


@transaction.atomic
def user_create(*, username: str, email: str, password: str, actor: audit.Actor, is_staff: bool = False) -> User:
    """Create an active user; the password must pass the configured validators."""
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.full_clean(exclude=["password"])
    validate_password(password, user=user)
    user.set_password(password)
    user.save()
    audit.record(audit.Action.USER_CREATED, actor=actor, target=audit.Target.user(user))
    return user
