"""The management API's OpenAPI schema (drf-spectacular): component names, the bearer security
scheme and the error responses every operation can give."""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """RFC 6749 §5.2: what every error of the API looks like (idp.http.errors.api_exception_handler)."""

    error = serializers.CharField(help_text="invalid_request, invalid_token, insufficient_scope, access_denied, ...")
    error_description = serializers.CharField(required=False, help_text="A short reason, e.g. name: too long.")

    class Meta:
        ref_name = "Error"


_ERRORS = {
    "400": "The request is malformed: a field is missing, unknown, of the wrong type or too long.",
    "401": "No valid bearer token or API key.",
    "403": "The token lacks scope idp.manage, or its subject lacks the permission (or the change would "
    "give away rights it does not hold).",
    "404": "No such object.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer: serializers.Serializer, direction: Literal["request", "response"]) -> str:
        # Views nest their own Input/Output classes (RoleDetailApi.Input); name components after
        # the view so they do not collide: RoleDetailInput.
        qualname = type(serializer).__qualname__
        if "." in qualname:
            outer, _, inner = qualname.rpartition(".")
            return outer.removesuffix("Api").replace(".", "") + inner
        return super().get_serializer_name(serializer, direction)

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or not self.path.startswith("/api/v1/") or self.path.startswith("/api/v1/schema"):
            return operation
        error = {"application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}}
        codes = ["400", "401", "403"]
        if "{" in self.path:
            codes.append("404")
        for code in codes:
            operation["responses"].setdefault(code, {"description": _ERRORS[code], "content": error})
        return operation


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "idp.api.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An access token from this provider's token endpoint (/oauth/token/) with scope "
                "idp.manage, in the Authorization header only; or an API key (idpk_...) with that scope."
            ),
        }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "idp.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key (idpk_...) with scope idp.manage, acting with the roles it carries.",
        }


def reject_unknown_fields(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: every request body is a strict input serializer (an unknown field is a
    400), so the schema says additionalProperties: false for each."""
    schemas = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                name = ref.rpartition("/")[2]
                if name in schemas:
                    schemas[name]["additionalProperties"] = False
    return result
