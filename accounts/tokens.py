"""Signed, expiring, single-use links for account self-service, on Django's token generator.

Password reset links are Django's default_token_generator: its hash covers the password hash and
the last sign-in, so a link stops working once the password changes (it was used) or the user
signs in; it expires after settings.PASSWORD_RESET_TIMEOUT.

E-mail verification links hash the address and email_verified instead: following one sets
email_verified, which spends it, and a changed address makes every link to the old one useless.
They expire after settings.EMAIL_VERIFICATION_TIMEOUT.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

password_reset_token = default_token_generator

TOKEN_MAX = 64  # longer than any token Django makes: the rest is not read


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "accounts.tokens.EmailVerificationTokenGenerator"

    def _make_hash_value(self, user: Any, timestamp: int) -> str:
        return f"{user.pk}|{user.email.lower()}|{user.email_verified}|{timestamp}"

    def check_token(self, user: Any, token: str | None) -> bool:
        """Django's check, with this kind of link's own lifetime (EMAIL_VERIFICATION_TIMEOUT)."""
        if not (user and token) or len(token) > TOKEN_MAX or not user.email:
            return False
        ts_b36, _, _ = token.partition("-")
        try:
            ts = base36_to_int(ts_b36)
        except ValueError:
            return False
        if not any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return False
        return 0 <= self._num_seconds(self._now()) - ts <= settings.EMAIL_VERIFICATION_TIMEOUT


email_verification_token = EmailVerificationTokenGenerator()
