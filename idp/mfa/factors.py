"""Second factors, the service layer: enrol, confirm, use, rename, remove and reset, each audited.
Raw secrets (a TOTP seed, recovery codes) leave only as return values for the one page that shows
them; audit data names factors by kind and id."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp_webauthn.models import WebAuthnCredential

import audit
from accounts.selectors import Caller, holdings_of
from accounts.services import caller_holds_check
from idp.mfa import totp
from idp.mfa.levels import Level
from idp.mfa.policy import level_required
from idp.models import RecoveryCode, TotpDevice
from idp.oauth.tokens import user_tokens_revoke
from idp.sessions.services import user_sessions_end


@dataclass(frozen=True)
class Factors:
    """What a user can prove a second factor with."""

    totp: TotpDevice | None
    passkeys: list[WebAuthnCredential]
    recovery_codes_left: int

    @property
    def any(self) -> bool:
        return self.totp is not None or bool(self.passkeys)


def factors_of(*, user: Any) -> Factors:
    return Factors(
        totp=TotpDevice.objects.filter(user=user, confirmed=True).first(),
        passkeys=list(WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("created_at", "pk")),
        recovery_codes_left=RecoveryCode.objects.filter(user=user, used_at__isnull=True).count(),
    )


def user_has_factor(*, user: Any) -> bool:
    return (
        TotpDevice.objects.filter(user=user, confirmed=True).exists()
        or WebAuthnCredential.objects.filter(user=user, confirmed=True).exists()
    )


def _enrolled(user: Any, actor: audit.Actor, factor: str, device_id: int, name: str) -> None:
    audit.record(
        audit.Action.MFA_ENROLLED,
        actor=actor,
        target=audit.Target.user(user),
        data={"factor": factor, "device": device_id, "name": name[:64]},
    )


# --- Authenticator apps ------------------------------------------------------------------------


def totp_enrol_begin(*, user: Any) -> TotpDevice:
    """A new, unconfirmed authenticator app for the user (replacing an unconfirmed one). A user
    has one app: replacing a confirmed one means removing it first."""
    with transaction.atomic():
        if TotpDevice.objects.select_for_update().filter(user=user, confirmed=True).exists():
            raise ValidationError("An authenticator app is already set up; remove it first.", code="exists")
        TotpDevice.objects.filter(user=user, confirmed=False).delete()
        return TotpDevice.objects.create(
            user=user, name="Authenticator app", confirmed=False, secret_encrypted=totp.seed_encrypt(totp.seed_new())
        )


def totp_pending(*, user: Any, device_id: Any) -> TotpDevice | None:
    """The user's app waiting for its first code, if it is the one `device_id` names (the one the
    caller's own session started: idp.pages.factors.totp_enrolment_pending)."""
    if not isinstance(device_id, int):
        return None
    return TotpDevice.objects.filter(pk=device_id, user=user, confirmed=False).first()


@transaction.atomic
def totp_confirm(*, user: Any, device_id: Any, code: str, actor: audit.Actor) -> TotpDevice | None:
    """The first code from the new app confirms it (and is spent: it cannot sign in again)."""
    if not isinstance(device_id, int):
        return None
    device = TotpDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
    if device is None or not device.verify_token(code):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    _enrolled(user, actor, "totp", device.pk, device.name)
    return device


def totp_verify(*, user: Any, code: str) -> TotpDevice | None:
    """A code of the user's confirmed app, accepted once (the row is locked while checked)."""
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        if device is not None and device.verify_token(code):
            return device
    return None


# --- Recovery codes ------------------------------------------------------------------------------

_CODE_BYTES = 10  # 80 bits: 16 base32 characters


def _normalised(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())[:32]


@transaction.atomic
def recovery_codes_generate(*, user: Any, actor: audit.Actor) -> list[str]:
    """A new set of recovery codes; the old set stops working. The codes are returned once and
    stored as digests."""
    RecoveryCode.objects.filter(user=user).delete()
    codes = []
    for _ in range(settings.MFA_RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(_CODE_BYTES)).decode()
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    RecoveryCode.objects.bulk_create(RecoveryCode(user=user, digest=_normalised(code)) for code in codes)
    audit.record(
        audit.Action.MFA_RECOVERY_CODES_REGENERATED,
        actor=actor,
        target=audit.Target.user(user),
        data={"count": len(codes)},
    )
    return codes


def recovery_codes_exist(*, user: Any) -> bool:
    """Whether the user was ever given a set (used codes count: a used-up set is regenerated by
    the user, after a fresh second factor, not handed out again)."""
    return RecoveryCode.objects.filter(user=user).exists()


@transaction.atomic
def recovery_code_use(*, user: Any, code: str) -> bool:
    """Spend one of the user's unused recovery codes: one conditional UPDATE, so two requests
    with the same code cannot both pass."""
    normalised = _normalised(code)
    if len(normalised) != 16:
        return False
    spent = RecoveryCode.objects.filter(user=user, digest=normalised, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if not spent:
        return False
    left = RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
    audit.record(
        audit.Action.MFA_RECOVERY_CODE_USED,
        actor=audit.Actor.user(user),
        target=audit.Target.user(user),
        data={"remaining": left},
    )
    return True


# --- Passkeys ------------------------------------------------------------------------------------


def passkey_enrolled(*, user: Any, credential: WebAuthnCredential, actor: audit.Actor) -> None:
    _enrolled(user, actor, "webauthn", credential.pk, credential.name)


@transaction.atomic
def passkey_rename(*, user: Any, credential_id: int, name: str, actor: audit.Actor) -> WebAuthnCredential:
    credential = WebAuthnCredential.objects.select_for_update().get(pk=credential_id, user=user)
    credential.name = name.strip()[:64] or credential.name
    credential.save(update_fields=["name"])
    return credential


# --- Removing and resetting -------------------------------------------------------------------


@transaction.atomic
def factor_remove(*, user: Any, factor: str, device_id: int, actor: audit.Actor) -> None:
    """Remove one of the user's factors. The last one of a user who must have one stays: removing
    it is refused. With the last factor go the recovery codes (they stand in for a factor)."""
    model = {"totp": TotpDevice, "webauthn": WebAuthnCredential}.get(factor)
    if model is None:
        raise ObjectDoesNotExist
    device = model.objects.select_for_update().get(pk=device_id, user=user)
    list(TotpDevice.objects.select_for_update().filter(user=user))  # one removal at a time per user
    others = (
        TotpDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk if factor == "totp" else None).count()
        + WebAuthnCredential.objects.filter(user=user, confirmed=True)
        .exclude(pk=device.pk if factor == "webauthn" else None)
        .count()
    )
    if device.confirmed and others == 0 and level_required(user=user) >= Level.MFA:
        raise ValidationError("This is your last second factor and your roles require one.", code="last_factor")
    device.delete()
    if others == 0:
        RecoveryCode.objects.filter(user=user).delete()
    audit.record(
        audit.Action.MFA_REMOVED,
        actor=actor,
        target=audit.Target.user(user),
        data={"factor": factor, "device": device_id},
    )


@transaction.atomic
def factors_reset(*, user: Any, actor: audit.Actor, caller: Caller | None = None, reason: str = "") -> int:
    """Staff reset: every factor and recovery code of the user goes; the user enrols again at the
    next sign-in that needs one. Returns how many factors went; a reset of nothing records nothing.

    Whoever then signs in with the user's password sets the new factor up: a caller (management
    API, Django admin) must hold every role and permission the user holds (caller_holds_check), so
    a reset never opens an account stronger than the caller's own."""
    if caller is not None:
        caller_holds_check(caller=caller, carries=holdings_of(user_id=user.pk), doing="reset this user's factors")
        if (user.is_staff or user.is_superuser) and not caller.is_operator:
            # Staff reach Django admin with the new factor: only a superuser (or the shell) resets theirs.
            raise PermissionDenied("cannot reset this user's factors: only a superuser resets those of staff")
    removed = TotpDevice.objects.filter(user=user).delete()[1].get("idp.TotpDevice", 0)
    removed += WebAuthnCredential.objects.filter(user=user).delete()[1].get("django_otp_webauthn.WebAuthnCredential", 0)
    codes = RecoveryCode.objects.filter(user=user).delete()[0]
    if removed or codes:
        # A reset answers a lost or stolen factor: what was issued on its strength goes too.
        user_tokens_revoke(user_id=user.pk, actor=actor, reason="mfa_reset", id_tokens=True)
        # And the sessions signed in with it (their clients told): whoever holds one is signed out.
        user_sessions_end(user_id=user.pk, actor=actor, reason="mfa_reset")
        audit.record(
            audit.Action.MFA_RESET,
            actor=actor,
            target=audit.Target.user(user),
            data={"factors": removed, "recovery_codes": codes} | ({"reason": reason[:200]} if reason else {}),
        )
    return removed


# --- Who must have one (Role.require_mfa, Application.require_mfa) ------------------------------
