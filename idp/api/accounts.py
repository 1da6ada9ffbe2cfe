"""The management API for users, permissions, roles and role assignments (/api/v1/), over the
accounts app's services and selectors.

Adapters only: parse input, make one selector or service call, serialize. The services refuse
privilege escalation (a Caller argument); HasPermission decides who may call at all.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import QuerySet
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import Permission, Role, RoleAssignment, User
from accounts.permissions import HasPermission, request_caller
from idp.api.serializers import (
    PermissionOutput,
    RoleAssignmentOutput,
    RoleOutput,
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictSerializer,
    UserOutput,
    client_id_field,
    codename_field,
    id_field,
    role_name_field,
)
from idp.http.policy import MANAGEMENT_API, endpoint
from idp.mfa import factors

REQUIRE_MFA_HELP = "Holders of the role sign in with a second factor (those without one set it up first)."


def _referenced(field: str, lookup: Any, **kwargs: Any) -> Any:
    """An object the request body names: missing is a 400 on that field, not a 404 of the URL."""
    try:
        return lookup(**kwargs)
    except ObjectDoesNotExist:
        raise serializers.ValidationError({field: ["no such object"]}) from None


class ListApi(GenericAPIView):
    """GET of a collection: filtered (filterset_class), ordered (ordering_fields, an allowlist) and
    paginated, by the backends in settings.REST_FRAMEWORK."""

    ordering = ["id"]

    def paginated(self, output: type[serializers.Serializer]) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(output(page, many=True).data)


# --- Users ---------------------------------------------------------------------------------------


@endpoint(**MANAGEMENT_API)
@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class UserListCreateApi(ListApi):
    permission_classes = [HasPermission("idp.users.read", write="idp.users.manage")]
    ordering_fields = ["id", "username", "email", "date_joined", "last_login"]

    class Filter(django_filters.FilterSet):
        username = django_filters.CharFilter(lookup_expr="icontains", max_length=150)
        email = django_filters.CharFilter(lookup_expr="iexact", max_length=254)

        class Meta:
            model = User
            fields = ["username", "email", "is_active"]

    filterset_class = Filter

    class Input(StrictSerializer):
        username = StrictCharField(max_length=150, validators=[UnicodeUsernameValidator()])
        email = StrictEmailField(max_length=254)
        password = StrictCharField(max_length=128, write_only=True, trim_whitespace=False)
        first_name = StrictCharField(max_length=150, required=False, allow_blank=True, default="")
        last_name = StrictCharField(max_length=150, required=False, allow_blank=True, default="")

    def get_queryset(self) -> QuerySet[User]:
        return selectors.user_list()

    @extend_schema(summary="List users", responses=UserOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginated(UserOutput)

    @extend_schema(summary="Create a user", request=Input, responses={201: UserOutput})
    def post(self, request: Request) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        user = services.user_create(actor=request_caller(request).actor, **params.validated_data)
        return Response(UserOutput(user).data, status=201)


@endpoint(**MANAGEMENT_API)
class UserDeactivateApi(APIView):
    permission_classes = [HasPermission("idp.users.manage")]

    class Input(StrictSerializer):
        reason = StrictCharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema(
        summary="Deactivate a user",
        description="The user can no longer sign in and their tokens stop working at once. Not yourself, "
        "not a staff account, and not a user "
        "holding permissions you do not hold. Deactivating an inactive user changes nothing.",
        request=Input,
        responses={200: UserOutput},
    )
    def post(self, request: Request, user_id: int) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        caller = request_caller(request)
        user = selectors.user_get(user_id=user_id)
        user = services.user_deactivate(user_id=user.pk, actor=caller.actor, caller=caller, **params.validated_data)
        return Response(UserOutput(user).data)


@endpoint(**MANAGEMENT_API)
class UserMfaResetApi(APIView):
    permission_classes = [HasPermission("idp.mfa.reset")]

    class Input(StrictSerializer):
        reason = StrictCharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema(
        summary="Reset a user's second factors",
        description="Their authenticator app, passkeys and recovery codes are removed; they set up a second "
        "factor again at their next sign-in that needs one. Resetting a user with none changes nothing. You "
        "must hold every role and permission the user holds.",
        request=Input,
        responses={204: None},
    )
    def post(self, request: Request, user_id: int) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        user = selectors.user_get(user_id=user_id)
        caller = request_caller(request)
        factors.factors_reset(user=user, actor=caller.actor, caller=caller, **params.validated_data)
        return Response(status=204)


# --- Permissions ---------------------------------------------------------------------------------


@endpoint(**MANAGEMENT_API)
class PermissionListCreateApi(ListApi):
    permission_classes = [HasPermission("idp.roles.read", write="idp.roles.manage")]
    ordering_fields = ["id", "codename"]

    class Filter(django_filters.FilterSet):
        codename = django_filters.CharFilter(lookup_expr="startswith", max_length=100)

        class Meta:
            model = Permission
            fields = ["codename"]

    filterset_class = Filter

    class Input(StrictSerializer):
        codename = codename_field()
        description = StrictCharField(max_length=255, required=False, allow_blank=True, default="")

    def get_queryset(self) -> QuerySet[Permission]:
        return selectors.permission_list()

    @extend_schema(summary="List permissions", responses=PermissionOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginated(PermissionOutput)

    @extend_schema(
        summary="Create a permission",
        description="A new permission is held by nobody until a role bundles it.",
        request=Input,
        responses={201: PermissionOutput},
    )
    def post(self, request: Request) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        permission = services.permission_create(actor=request_caller(request).actor, **params.validated_data)
        return Response(PermissionOutput(permission).data, status=201)


# --- Roles ---------------------------------------------------------------------------------------


@endpoint(**MANAGEMENT_API)
class RoleListCreateApi(ListApi):
    permission_classes = [HasPermission("idp.roles.read", write="idp.roles.manage")]
    ordering_fields = ["id", "name"]

    class Filter(django_filters.FilterSet):
        name = django_filters.CharFilter(lookup_expr="icontains", max_length=100)
        client_id = django_filters.CharFilter(field_name="application__client_id", max_length=100)
        is_global = django_filters.BooleanFilter(field_name="application", lookup_expr="isnull")
        permission = django_filters.CharFilter(field_name="permissions__codename", max_length=100, distinct=True)

        class Meta:
            model = Role
            fields = ["name", "client_id", "is_global", "permission"]

    filterset_class = Filter

    class Input(StrictSerializer):
        name = role_name_field()
        description = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
        client_id = client_id_field(
            required=False, allow_null=True, default=None, help_text="Make it this client's own role."
        )
        permissions = serializers.ListField(child=codename_field(), max_length=100, required=False, default=list)
        require_mfa = StrictBooleanField(required=False, default=False, help_text=REQUIRE_MFA_HELP)

    def get_queryset(self) -> QuerySet[Role]:
        return selectors.role_list()

    @extend_schema(summary="List roles", responses=RoleOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginated(RoleOutput)

    @extend_schema(
        summary="Create a role",
        description="Global, or a client's own role with client_id. Only permissions you hold.",
        request=Input,
        responses={201: RoleOutput},
    )
    def post(self, request: Request) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        client_id = data.pop("client_id")
        application = _referenced("client_id", selectors.client_get, client_id=client_id) if client_id else None
        caller = request_caller(request)
        role = services.role_create(application=application, actor=caller.actor, caller=caller, **data)
        return Response(RoleOutput(selectors.role_get(role_id=role.pk)).data, status=201)


@endpoint(**MANAGEMENT_API)
class RoleDetailApi(APIView):
    permission_classes = [HasPermission("idp.roles.read", write="idp.roles.manage")]

    class Input(StrictSerializer):
        description = StrictCharField(max_length=255, required=False, allow_blank=True)
        permissions = serializers.ListField(
            child=codename_field(), max_length=100, required=False, help_text="The role's new set of permissions."
        )
        require_mfa = StrictBooleanField(required=False, help_text=REQUIRE_MFA_HELP)

    @extend_schema(summary="Get a role", responses=RoleOutput)
    def get(self, request: Request, role_id: int) -> Response:
        return Response(RoleOutput(selectors.role_get(role_id=role_id)).data)

    @extend_schema(
        summary="Change a role",
        description="Its description, its permissions (replaced as a whole) and/or whether its holders "
        "need a second factor. You must hold every permission the role has, before and after.",
        request=Input,
        responses=RoleOutput,
    )
    def patch(self, request: Request, role_id: int) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        role = selectors.role_get(role_id=role_id)
        caller = request_caller(request)
        services.role_update(role_id=role.pk, actor=caller.actor, caller=caller, **params.validated_data)
        return Response(RoleOutput(selectors.role_get(role_id=role.pk)).data)

    @extend_schema(
        summary="Delete a role",
        description="Every holder loses it (each an audited revocation). You must hold all its permissions.",
        responses={204: None},
    )
    def delete(self, request: Request, role_id: int) -> Response:
        role = selectors.role_get(role_id=role_id)
        caller = request_caller(request)
        services.role_delete(role_id=role.pk, actor=caller.actor, caller=caller)
        return Response(status=204)


# --- Role assignments ----------------------------------------------------------------------------


@endpoint(**MANAGEMENT_API)
class RoleAssignmentListCreateApi(ListApi):
    permission_classes = [HasPermission("idp.roles.read", write="idp.roles.manage")]
    ordering_fields = ["id", "created_at"]

    class Filter(django_filters.FilterSet):
        role = django_filters.NumberFilter(field_name="role_id")
        user = django_filters.NumberFilter(field_name="user_id")
        group = django_filters.NumberFilter(field_name="group_id")
        client_id = django_filters.CharFilter(field_name="client__client_id", max_length=100)

        class Meta:
            model = RoleAssignment
            fields = ["role", "user", "group", "client_id"]

    filterset_class = Filter

    class Input(StrictSerializer):
        role = id_field(help_text="The role to grant.")
        # The holder: exactly one of these three.
        user = id_field(required=False, help_text="Grant to this user.")
        group = id_field(required=False, help_text="Grant to this group: its members hold the role.")
        client_id = client_id_field(
            required=False, help_text="Grant to the service account of this client_credentials client."
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if sum(name in attrs for name in ("user", "group", "client_id")) != 1:
                raise serializers.ValidationError({"holder": ["give exactly one of user, group and client_id"]})
            return attrs

    def get_queryset(self) -> QuerySet[RoleAssignment]:
        return selectors.role_assignment_list()

    @extend_schema(summary="List role assignments", responses=RoleAssignmentOutput(many=True))
    def get(self, request: Request) -> Response:
        return self.paginated(RoleAssignmentOutput)

    @extend_schema(
        summary="Grant a role",
        description="To a user, a group or a service account; never to yourself, and only a role whose "
        "permissions you all hold. Granting a role already held changes nothing.",
        request=Input,
        responses={201: RoleAssignmentOutput},
    )
    def post(self, request: Request) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        role = _referenced("role", selectors.role_get, role_id=data["role"])
        if "user" in data:
            holder = {"user": _referenced("user", selectors.user_get, user_id=data["user"])}
        elif "group" in data:
            holder = {"group": _referenced("group", selectors.group_get, group_id=data["group"])}
        else:
            holder = {"client": _referenced("client_id", selectors.client_get, client_id=data["client_id"])}
        caller = request_caller(request)
        assignment = services.role_grant(role=role, actor=caller.actor, caller=caller, **holder)
        return Response(
            RoleAssignmentOutput(selectors.role_assignment_get(assignment_id=assignment.pk)).data, status=201
        )


@endpoint(**MANAGEMENT_API)
class RoleAssignmentRevokeApi(APIView):
    permission_classes = [HasPermission("idp.roles.manage")]

    @extend_schema(
        summary="Revoke a role",
        description="Not from yourself, and only a role whose permissions you all hold.",
        responses={204: None},
    )
    def delete(self, request: Request, assignment_id: int) -> Response:
        assignment = selectors.role_assignment_get(assignment_id=assignment_id)
        caller = request_caller(request)
        services.role_revoke(assignment=assignment, actor=caller.actor, caller=caller)
        return Response(status=204)
