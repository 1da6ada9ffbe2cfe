"""Reads of accounts."""

from __future__ import annotations

from typing import Any

from accounts.models import User


def user_standard_claims(user: User) -> dict[str, Any]:
    """The OpenID Connect standard claims (Core §5.1) this user has; empty values are left out,
    since an empty string is not a claim value. Which of them are released is the caller's
    business (scopes, the claims request parameter)."""
    address = {
        "street_address": user.street_address,
        "locality": user.locality,
        "region": user.region,
        "postal_code": user.postal_code,
        "country": user.country,
    }
    address = {key: value for key, value in address.items() if value}
    if address:
        lines = [
            address.get("street_address", ""),
            " ".join(filter(None, [address.get("postal_code"), address.get("locality")])),
        ]
        lines += [address.get("region", ""), address.get("country", "")]
        address["formatted"] = "\n".join(line for line in lines if line)
    claims: dict[str, Any] = {
        "name": user.get_full_name(),
        "given_name": user.first_name,
        "family_name": user.last_name,
        "preferred_username": user.get_username(),
        "locale": user.locale,
        "zoneinfo": user.zoneinfo,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        "email_verified": user.email_verified if user.email else None,
        "phone_number": user.phone_number,
        "phone_number_verified": user.phone_number_verified if user.phone_number else None,
        "address": address or None,
    }
    return {key: value for key, value in claims.items() if value not in ("", None)}
