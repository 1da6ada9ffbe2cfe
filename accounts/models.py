import functools
import unicodedata
from typing import Any

from confusable_homoglyphs import confusables
from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

# Scripts whose letters are the reference shapes: a character of any other script that looks like
# one of them is compared as that one (username_key).
_REFERENCE_SCRIPTS = ["latin", "common"]


def username_key(username: str) -> str:
    """What makes two usernames the same account name: compatibility forms folded (NFKC), every
    letter of another script that looks like a Latin one replaced by it (the Unicode confusables
    data of UTS #39, through confusable_homoglyphs), then case folded. So "ALICE", a fullwidth
    "alice" and an all-Cyrillic look-alike of it come out as "alice". Stored, unique, on the user
    (User.username_key). Look-alikes are mapped before case folding, as the data describes each
    letter in the case it is drawn in. Look-alikes inside the Latin script ("aIice") are
    username_look_alike_key's: mapped here, they would break case-insensitivity (I is i's capital)."""
    normalized = unicodedata.normalize("NFKC", username)
    found = confusables.is_confusable(normalized, greedy=True, preferred_aliases=_REFERENCE_SCRIPTS) or []
    look_alikes = {
        item["character"]: item["homoglyphs"][0]["c"]
        for item in found
        if item["alias"].lower() not in _REFERENCE_SCRIPTS and item["homoglyphs"]
    }
    mapped = "".join(look_alikes.get(ch, ch) for ch in normalized)
    return unicodedata.normalize("NFKC", mapped.casefold())


@functools.cache
def _look_alike_representatives() -> dict[str, str]:
    """Every character of the confusables data that looks like another single character, mapped to
    one representative of its look-alike group. In the data (UTS #39 confusables.txt, both ways
    round) each character points to one prototype, so a group is a star around its prototype: the
    representative is the member with the most look-alikes, else the first ASCII or lowest one."""
    neighbours: dict[str, set[str]] = {}
    for character, homoglyphs in confusables.confusables_data.items():
        # The data wraps right-to-left characters in marks (U+200E) to print them; they are not part of them.
        character = character.replace("\u200e", "")
        for homoglyph in homoglyphs:
            other = homoglyph["c"].replace("\u200e", "")
            if len(character) == 1 and len(other) == 1:  # "rn" for "m" cannot be mapped letter by letter
                neighbours.setdefault(character, set()).add(other)
                neighbours.setdefault(other, set()).add(character)
    representatives: dict[str, str] = {}
    for start in neighbours:
        if start in representatives:
            continue
        group, pending = {start}, [start]
        while pending:
            for other in neighbours[pending.pop()] - group:
                group.add(other)
                pending.append(other)
        chosen = min(group, key=lambda ch: (-len(neighbours[ch]), not ch.isascii(), ord(ch)))
        representatives.update(dict.fromkeys(group, chosen))
    return representatives


def username_look_alike_key(username: str) -> str:
    """What makes two usernames look the same: compatibility forms folded (NFKC), every character
    replaced by the representative of its look-alike group in the Unicode confusables data (in any
    script, Latin included: "aIice", "ɑlice" and "alıce" read as "alice", "0" as "O"), then case
    folded, so that a look-alike of a case variant collides too ("AII" beside "all"). Stored, unique,
    on the user (User.username_look_alike_key), beside username_key: look-alikes are judged in the
    case they are written in (I looks like l, not i), so this key alone is not case-insensitive.

    Still accepted: look-alikes of several letters, which a letter-by-letter key cannot map ("rn"
    for "m", "æ" for "ae", "ʦ" for "ts" in the data; "cl" for "d", "vv" for "w", not in it); and a
    case change at one letter combined with a look-alike at another where a letter's capital and
    small forms look like different letters ("ALlCE" beside "alice", through ALICE: the capital I
    looks like l, the small i does not). It also reaches a little beyond the eye: "Ian" and "Lan"
    collide (I reads as l, and lan is Lan). A new release of the confusables data changes keys:
    fill them again, as migration 0007 does."""
    normalized = unicodedata.normalize("NFKC", username)
    representatives = _look_alike_representatives()
    mapped = "".join(representatives.get(ch, ch) for ch in normalized)
    return unicodedata.normalize("NFKC", mapped.casefold())


def validate_username_script(username: str) -> None:
    """Refuse a name that mixes scripts with look-alike letters (a Cyrillic a inside "paypal"): it
    exists to be mistaken for another (django-registration's rule, on the same data)."""
    if confusables.is_dangerous(username):
        raise ValidationError("This username mixes alphabets in a way that imitates another name.", code="confusable")


class User(AbstractUser):
    """The project's user model, swappable from the first migration so roles and profile fields
    can be added later without a painful swap.

    Profile fields are the OpenID Connect standard claims the provider can release (scopes
    profile, email, address and phone); empty ones are left out of tokens and userinfo.
    """

    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text="Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only.",
        validators=[UnicodeUsernameValidator(), validate_username_script],
        error_messages={"unique": "A user with that username already exists."},
    )
    # username_key(username): unique, so no two accounts differ only by case, compatibility forms
    # or look-alike letters. Derived in save(); never edited.
    username_key = models.CharField(max_length=600, unique=True, editable=False)
    # username_look_alike_key(username): unique, so no two accounts look alike in any case.
    username_look_alike_key = models.CharField(max_length=600, unique=True, editable=False)
    # True only through the link mailed to the address (accounts.services.user_email_verify) or an
    # operator's audited decision; a new address is unverified until its own link is followed.
    email_verified = models.BooleanField(default=False)
    # Created through /accounts/register/: such a user receives no token at any client while the
    # e-mail address is unverified (accounts.selectors.user_may_receive_tokens).
    is_self_registered = models.BooleanField(default=False, editable=False)
    phone_number = models.CharField(max_length=32, blank=True, help_text="E.164, e.g. +14155550100")
    phone_number_verified = models.BooleanField(default=False)
    street_address = models.CharField(max_length=255, blank=True)
    locality = models.CharField("city", max_length=128, blank=True)
    region = models.CharField(max_length=128, blank=True)
    postal_code = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=64, blank=True)
    locale = models.CharField(max_length=35, blank=True, help_text="BCP 47, e.g. en-GB")
    zoneinfo = models.CharField(max_length=64, blank=True, help_text="IANA time zone, e.g. Europe/Paris")
    updated_at = models.DateTimeField(auto_now=True)

    # Django's AbstractUser has a Meta (its verbose names) that django-stubs does not declare.
    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]
        constraints = [
            # One account per address, whatever its case; several accounts may have none.
            models.UniqueConstraint(
                Lower("email"),
                condition=~Q(email=""),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with that email address already exists.",
            )
        ]

    def clean(self) -> None:
        super().clean()
        if not self.username:
            return  # no name (a form already refused it, e.g. Django's case check): nothing to compare
        others = User.objects.exclude(pk=self.pk)
        if others.filter(username=self.username).exists():
            return  # the same name exactly: validate_unique says so, in Django's words
        same = Q(username_key=username_key(self.username)) | Q(
            username_look_alike_key=username_look_alike_key(self.username)
        )
        if others.filter(same).exists():
            raise ValidationError(
                {"username": "A user with this username, or one that looks the same, already exists."}
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.username_key = username_key(self.username)
        self.username_look_alike_key = username_look_alike_key(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key", "username_look_alike_key"}
        super().save(*args, **kwargs)


# The management API's permissions (accounts.permissions.HasPermission): read = list and retrieve,
# manage = every write. Every install has them, held together by the global role ADMIN_ROLE
# (migrations 0004_management_permissions and 0005_audit_read_permission;
# accounts.services.admin_role_ensure).
USERS_READ = "idp.users.read"
USERS_MANAGE = "idp.users.manage"
ROLES_READ = "idp.roles.read"
ROLES_MANAGE = "idp.roles.manage"
CLIENTS_READ = "idp.clients.read"
CLIENTS_MANAGE = "idp.clients.manage"
AUDIT_READ = "audit.read"
APIKEYS_MANAGE = "idp.apikeys.manage"
MFA_RESET = "idp.mfa.reset"
SESSIONS_END = "idp.sessions.end"
MANAGEMENT_PERMISSIONS = {
    USERS_READ: "List users.",
    USERS_MANAGE: "Create and deactivate users.",
    ROLES_READ: "List permissions, roles and role assignments.",
    ROLES_MANAGE: "Create permissions and roles, change and delete roles, grant and revoke them.",
    CLIENTS_READ: "List clients.",
    CLIENTS_MANAGE: "Register clients, rotate their secrets and disable them.",
    AUDIT_READ: "Read the audit trail.",
    MFA_RESET: "Reset a user's second factors (the user enrols again).",
    SESSIONS_END: "See a user's sessions and end them (the user is signed out there).",
    APIKEYS_MANAGE: "See every API key and revoke any; rotate and reveal machine clients' keys carrying "
    "no more than one holds oneself.",
}
ADMIN_ROLE = "idp-admin"

CODENAME_VALIDATOR = RegexValidator(
    r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$",
    "Use dotted lower-case words, e.g. invoices.read or idp.clients.manage.",
)
ROLE_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", "Letters, digits and _ . : - only, starting with a letter or digit."
)


class Permission(models.Model):
    """Something a caller may do, by a stable codename that code and tokens refer to."""

    codename = models.CharField(max_length=100, unique=True, validators=[CODENAME_VALIDATOR])
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["codename"]

    def __str__(self) -> str:
        return self.codename


class Role(models.Model):
    """A named set of permissions: global, or one client's own ("client roles")."""

    name = models.CharField(max_length=100, validators=[ROLE_NAME_VALIDATOR])
    description = models.CharField(max_length=255, blank=True)
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="roles",
        help_text="The client this role belongs to; empty for a global role.",
    )
    permissions = models.ManyToManyField(Permission, blank=True, related_name="roles")
    require_mfa = models.BooleanField(
        "require a second factor",
        default=False,
        help_text="Holders of this role sign in with a second factor; one without enrols right after the password.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(application__isnull=True), name="accounts_role_global_name"
            ),
            models.UniqueConstraint(fields=["name", "application"], name="accounts_role_client_name"),
        ]

    def __str__(self) -> str:
        return self.name if self.application_id is None else f"{self.name} ({self.application})"


class RoleAssignment(models.Model):
    """A role held by exactly one of: a user, a Django group (its members inherit it), or a
    machine client (the service account behind client_credentials)."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="role_assignments"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="role_assignments")
    client = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_assignments",
        help_text="A client_credentials client holding the role as its service account.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(user__isnull=False, group__isnull=True, client__isnull=True)
                    | Q(user__isnull=True, group__isnull=False, client__isnull=True)
                    | Q(user__isnull=True, group__isnull=True, client__isnull=False)
                ),
                name="accounts_roleassignment_one_holder",
            ),
            models.UniqueConstraint(fields=["role", "user"], name="accounts_roleassignment_user_once"),
            models.UniqueConstraint(fields=["role", "group"], name="accounts_roleassignment_group_once"),
            models.UniqueConstraint(fields=["role", "client"], name="accounts_roleassignment_client_once"),
        ]

    def __str__(self) -> str:
        return f"{self.role} → {self.holder}"

    @property
    def holder(self) -> Any:
        return self.user or self.group or self.client
