"""Shapes of the accounts API (accounts/api.py): strict input fields and the outputs several views
share. Shape and type validation only: no queries, no writes.

Strict means: a field takes its own JSON type only (DRF would turn 12 into "12" and "yes" into
True), and a field the serializer does not name is an error, not silently dropped, so a request
that tries to set is_staff learns it cannot. idp/serializers.py holds the same rules for the
clients API (apps share no serializers).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from accounts.models import CODENAME_VALIDATOR, ROLE_NAME_VALIDATOR, Permission, Role, RoleAssignment, User

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
    permissions = serializers.SlugRelatedField(slug_field="codename", many=True, read_only=True)

    class Meta:
        model = Role
        fields = ["id", "name", "description", "client_id", "permissions"]
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
