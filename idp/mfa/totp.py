"""Authenticator apps: RFC 6238 TOTP through django-otp's implementation (SHA-1, 6 digits, 30 s),
seeds encrypted with the key ring of signing keys, the otpauth:// URI and its QR code."""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django_otp.oath import TOTP

from idp.keys.signing import key_ring

if TYPE_CHECKING:
    from idp.models import TotpDevice

SEED_BYTES = 20  # RFC 4226 §4: 160 bits
DIGITS = 6
STEP_SECONDS = 30
TOLERANCE_STEPS = 1  # a code of the step before or after the current one (clock drift)


def seed_new() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def seed_encrypt(seed: bytes) -> str:
    return key_ring().encrypt(seed).decode()


def seed_decrypt(device: TotpDevice) -> bytes:
    return key_ring().decrypt(device.secret_encrypted.encode())


def seed_base32(seed: bytes) -> str:
    """The seed as authenticator apps take it typed in (RFC 4648 base32, no padding)."""
    return base64.b32encode(seed).decode().rstrip("=")


def step_matching(device: TotpDevice, code: str) -> int | None:
    """The time step whose code this is, within one step of now and after the last one accepted;
    None otherwise. Only six digits are a code."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = TOTP(seed_decrypt(device), step=STEP_SECONDS, digits=DIGITS)
    if not totp.verify(int(code), tolerance=TOLERANCE_STEPS, min_t=device.last_t + 1):
        return None
    return totp.t()  # verify() left the drift of the step that matched in place


def provisioning_uri(*, seed: bytes, account: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code (Google Authenticator's
    Key-Uri-Format)."""
    issuer = settings.MFA_TOTP_ISSUER
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode(
        {"secret": seed_base32(seed), "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": STEP_SECONDS}
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (paths only, no style attribute: our CSP allows none)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")
