"""Authentication levels (acr) and methods (amr): what a sign-in proved, in the words relying
parties read in ID tokens and introspection.

amr values are RFC 8176's: `pwd` (password), `fed` (a sign-in through an upstream provider,
idp.federation: one factor, as a password is), `otp` (authenticator app), `hwk` (a passkey or
security key bound to its device) or `swk` (a passkey that syncs between devices: backup-eligible),
`user` (the authenticator verified its user: PIN or biometrics, a passkey sign-in without
password) and `mfa` (two factors). A recovery code adds `mfa` alone: RFC 8176 has no value for it.

acr values are ours, ordered, each satisfying those below it:

    urn:idp:acr:pwd   one factor (a password)
    urn:idp:acr:mfa   two factors (password and app, key or recovery code; or a user-verifying passkey)
    phr               phishing-resistant (a passkey or security key was used: it answers only to
                      this provider's origin). The value of OpenID's EAP ACR Values 1.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

ACR_PWD = "urn:idp:acr:pwd"
ACR_MFA = "urn:idp:acr:mfa"
ACR_PHR = "phr"


class Level(IntEnum):
    PWD = 1
    MFA = 2
    PHR = 3

    @property
    def acr(self) -> str:
        return _ACR_OF[self]


_ACR_OF = {Level.PWD: ACR_PWD, Level.MFA: ACR_MFA, Level.PHR: ACR_PHR}
_LEVEL_OF = {acr: level for level, acr in _ACR_OF.items()}
ACR_VALUES_SUPPORTED = [ACR_PWD, ACR_MFA, ACR_PHR]
AMR_VALUES_SUPPORTED = ["pwd", "fed", "otp", "hwk", "swk", "user", "mfa"]


def level_of_acr(acr: str) -> Level | None:
    return _LEVEL_OF.get(acr)


def level_of_amr(amr: Iterable[str]) -> Level:
    """The level a set of methods reaches."""
    methods = set(amr)
    if methods & {"hwk", "swk"} and (methods & {"pwd", "user", "otp"}):
        return Level.PHR
    if "mfa" in methods:
        return Level.MFA
    return Level.PWD


def amr_with(amr: Iterable[str], *added: str) -> list[str]:
    """Methods plus some more, `mfa` added once two factors are in, in a stable order."""
    methods = set(amr) | set(added)
    if len(methods & {"pwd", "fed", "otp", "hwk", "swk", "user", "rec"}) >= 2 or "rec" in methods:
        methods.add("mfa")
    methods.discard("rec")  # a recovery code: no RFC 8176 value, it shows as mfa
    return sorted(methods, key=lambda m: (AMR_VALUES_SUPPORTED.index(m) if m in AMR_VALUES_SUPPORTED else 99, m))


@dataclass(frozen=True)
class Authentication:
    """How and when the person behind a session or a token authenticated."""

    amr: tuple[str, ...]
    auth_time: datetime

    @property
    def level(self) -> Level:
        return level_of_amr(self.amr)

    @property
    def acr(self) -> str:
        return self.level.acr

    def as_session(self) -> dict[str, Any]:
        return {"amr": list(self.amr), "auth_time": self.auth_time.timestamp()}

    @classmethod
    def from_session(cls, value: Any) -> Authentication | None:
        if not isinstance(value, dict):
            return None
        amr, at = value.get("amr"), value.get("auth_time")
        if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr) or not isinstance(at, int | float):
            return None
        return cls(amr=tuple(amr), auth_time=datetime.fromtimestamp(at, tz=UTC))


@dataclass(frozen=True)
class Requested:
    """The level an authorization request asks for (acr_values, or the claims parameter's acr)."""

    level: Level | None  # None: nothing this provider knows was asked for
    values: tuple[str, ...]  # the values asked for, in the client's order
    essential: bool  # claims' essential acr (OIDC Core §5.5.1.1): unmet is a failed authentication

    def acr_for(self, reached: Level) -> str:
        """The acr to report for a sign-in at `reached`: for an essential request, the highest
        requested value it satisfies (Core §5.5.1.1: one of the requested values); otherwise
        the level reached."""
        if self.essential:
            met = [value for value in self.values if (lv := level_of_acr(value)) is not None and lv <= reached]
            if met:
                return max(met, key=lambda value: level_of_acr(value) or 0)
        return reached.acr


def requested(*, acr_values: str | None, claims: Any) -> Requested:
    """The level asked for: the lowest known level among the values (the request is met by any
    of them), from the claims parameter's id_token acr when present, else acr_values."""
    essential = False
    values: list[str] = []
    id_token = claims.get("id_token") if isinstance(claims, dict) else None
    asked = id_token.get("acr") if isinstance(id_token, dict) else None
    if isinstance(asked, dict):
        essential = asked.get("essential") is True
        if isinstance(asked.get("value"), str):
            values = [asked["value"]]
        elif isinstance(asked.get("values"), list):
            values = [value for value in asked["values"] if isinstance(value, str)]
    if not values and isinstance(acr_values, str):
        values = acr_values.split()
    known = [level for value in values if (level := level_of_acr(value)) is not None]
    return Requested(level=min(known) if known else None, values=tuple(values), essential=essential)
