"""The management API's serializer kit: strict input fields and the outputs of every /api/v1
resource. Shape and type validation only: no queries, no writes.

Strict means: a field takes its own JSON type only (DRF would turn 12 into "12" and "yes" into
True), and a field the serializer does not name is an error, not silently dropped, so a request
that tries to set is_staff learns it cannot.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import CODENAME_VALIDATOR, ROLE_NAME_VALIDATOR, Permission, Role, RoleAssignment, User
from idp.models import Application
from idp.oauth.clients import GRANT_TYPES

_GRANT_NAMES = {value: name for name, value in GRANT_TYPES.items()}

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# An input serializer that refuses fields it does not declare. (A comment, not a docstring: the
# schema would repeat a docstring as every input's description.)
class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({str(unknown[0])[:40]: ["unknown field"]})
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string, without control characters (tab and line breaks aside)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if CONTROL_CHARACTERS.search(data):
            raise serializers.ValidationError("control characters are not allowed")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=str(data)[:20])
        return data


def id_field(**kwargs: Any) -> StrictIntegerField:
    """An object id: a positive JSON integer that fits the database's bigint."""
    return StrictIntegerField(min_value=1, max_value=2**63 - 1, **kwargs)


def codename_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(max_length=100, validators=[CODENAME_VALIDATOR], **kwargs)


CLIENT_ID_VALIDATOR = RegexValidator(r"^[A-Za-z0-9._~-]+$", "Letters, digits and . _ ~ - only.")


def client_id_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(max_length=100, validators=[CLIENT_ID_VALIDATOR], **kwargs)


def role_name_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(max_length=100, validators=[ROLE_NAME_VALIDATOR], **kwargs)


def uri_field() -> StrictCharField:
    """One URI of a list: the model stores them space-separated, so a space would make two."""
    return StrictCharField(max_length=512, validators=[RegexValidator(r"^\S+$", "a URI has no spaces")])


# --- Outputs ---------------------------------------------------------------------------------------


class UserOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "is_staff",
            "date_joined",
            "last_login",
        ]
        read_only_fields = fields


class PermissionOutput(serializers.ModelSerializer):
    class Meta:
        model = Permission
        fields = ["id", "codename", "description"]
        read_only_fields = fields


class RoleOutput(serializers.ModelSerializer):
    client_id = serializers.CharField(
        source="application.client_id",
        allow_null=True,
        read_only=True,
        help_text="The client this role belongs to; null for a global role.",
    )
    permissions: serializers.SlugRelatedField[Permission] = serializers.SlugRelatedField(
        slug_field="codename", many=True, read_only=True
    )

    class Meta:
        model = Role
        fields = ["id", "name", "description", "client_id", "permissions", "require_mfa"]
        read_only_fields = fields


class RoleAssignmentOutput(serializers.ModelSerializer):
    role_name = serializers.CharField(source="role.name", read_only=True)
    user = serializers.IntegerField(source="user_id", allow_null=True, read_only=True)
    group = serializers.IntegerField(source="group_id", allow_null=True, read_only=True)
    client_id = serializers.CharField(
        source="client.client_id",
        allow_null=True,
        read_only=True,
        help_text="The client_credentials client whose service account holds the role.",
    )
    role = serializers.IntegerField(source="role_id", read_only=True)

    class Meta:
        model = RoleAssignment
        fields = ["id", "role", "role_name", "user", "group", "client_id", "created_at"]
        read_only_fields = fields


class ClientOutput(serializers.ModelSerializer):
    grant = serializers.SerializerMethodField(help_text="authorization_code or client_credentials")
    redirect_uris = serializers.SerializerMethodField()
    post_logout_redirect_uris = serializers.SerializerMethodField()
    scopes = serializers.SerializerMethodField(help_text="The scopes this client may be granted.")
    skip_consent = serializers.BooleanField(source="skip_authorization", read_only=True)
    previous_secret_expires_at = serializers.DateTimeField(
        source="previous_client_secret_expires_at",
        allow_null=True,
        read_only=True,
        help_text="Until when the secret before the last rotation is accepted; null: only the current one is.",
    )
    id_token_signed_response_alg = serializers.CharField(source="algorithm", read_only=True)

    class Meta:
        model = Application
        fields = [
            "client_id",
            "name",
            "client_type",
            "grant",
            "redirect_uris",
            "post_logout_redirect_uris",
            "scopes",
            "skip_consent",
            "require_pkce",
            "id_token_signed_response_alg",
            "access_token_format",
            "access_token_audience",
            "is_active",
            "is_resource_server",
            "require_mfa",
            "backchannel_logout_uri",
            "backchannel_logout_session_required",
            "frontchannel_logout_uri",
            "frontchannel_logout_session_required",
            "previous_secret_expires_at",
            "created",
            "updated",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=sorted(GRANT_TYPES)))
    def get_grant(self, application: Application) -> str:
        return _GRANT_NAMES.get(application.authorization_grant_type, application.authorization_grant_type)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_redirect_uris(self, application: Application) -> list[str]:
        return application.redirect_uris.split()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_post_logout_redirect_uris(self, application: Application) -> list[str]:
        return application.post_logout_redirect_uris.split()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_scopes(self, application: Application) -> list[str]:
        return application.scope_list


class AuditPartyOutput(serializers.Serializer):
    type = serializers.CharField(
        help_text="An actor: user, client, apikey, anonymous or system. A target: the kind of object "
        "(user, client, apikey, accounts.role, ...)."
    )
    id = serializers.CharField(help_text="The copied identifier (a user id, a client_id, an API key's public id).")


class AuditTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC with microseconds: the event's time exactly as its hash covers it."""

    def to_representation(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="microseconds")
