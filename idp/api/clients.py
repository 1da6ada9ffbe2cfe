"""The management API for clients (/api/v1/clients/). Adapters only: parse input, make one
selector or service call, serialize."""

from __future__ import annotations

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasPermission, request_caller
from idp.api.serializers import (
    ClientOutput,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    uri_field,
)
from idp.http.policy import MANAGEMENT_API, endpoint
from idp.models import LOGOUT_URI_MAX, Application
from idp.oauth import clients

# RFC 6749 §5.1 asks the same of token responses: a response carrying a secret is never cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@endpoint(**MANAGEMENT_API)
class ClientListCreateApi(GenericAPIView):
    permission_classes = [HasPermission("idp.clients.read", write="idp.clients.manage")]
    ordering_fields = ["id", "name", "created"]
    ordering = ["id"]

    class Filter(django_filters.FilterSet):
        name = django_filters.CharFilter(lookup_expr="icontains", max_length=255)
        grant = django_filters.ChoiceFilter(choices=[(name, name) for name in clients.GRANT_TYPES], method="by_grant")

        class Meta:
            model = Application
            fields = ["name", "client_type", "grant", "is_active"]

        def by_grant(self, queryset: QuerySet[Application], name: str, value: str) -> QuerySet[Application]:
            return queryset.filter(authorization_grant_type=clients.GRANT_TYPES[value])

    filterset_class = Filter

    class Input(StrictSerializer):
        name = StrictCharField(max_length=255)
        client_type = serializers.ChoiceField(choices=[Application.CLIENT_CONFIDENTIAL, Application.CLIENT_PUBLIC])
        grant = serializers.ChoiceField(choices=sorted(clients.GRANT_TYPES))
        redirect_uris = serializers.ListField(child=uri_field(), max_length=20, required=False, default=list)
        post_logout_redirect_uris = serializers.ListField(
            child=uri_field(), max_length=20, required=False, default=list
        )
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=sorted(settings.OAUTH2_PROVIDER["SCOPES"])),
            max_length=20,
            required=False,
            default=list,
        )
        skip_consent = StrictBooleanField(required=False, default=False)
        require_pkce = StrictBooleanField(required=False, default=False)
        id_token_signed_response_alg = serializers.ChoiceField(
            choices=list(settings.SIGNING_ALGORITHMS), required=False, default="RS256"
        )
        access_token_format = serializers.ChoiceField(
            choices=Application.AccessTokenFormat.values, required=False, default=Application.AccessTokenFormat.OPAQUE
        )
        access_token_audience = StrictCharField(max_length=255, required=False, default="", allow_blank=True)
        is_resource_server = StrictBooleanField(
            required=False,
            default=False,
            help_text="May introspect tokens and API keys (RFC 7662), learning whose they are and what they hold.",
        )
        require_mfa = StrictBooleanField(
            required=False, default=False, help_text="Every sign-in to this client uses a second factor."
        )
        backchannel_logout_uri = StrictCharField(
            max_length=LOGOUT_URI_MAX,
            required=False,
            default="",
            allow_blank=True,
            help_text="OpenID Connect Back-Channel Logout: receives a signed logout token when a session that "
            "signed in to this client ends. https, at a public address; no fragment.",
        )
        backchannel_logout_session_required = StrictBooleanField(required=False, default=False)
        frontchannel_logout_uri = StrictCharField(
            max_length=LOGOUT_URI_MAX,
            required=False,
            default="",
            allow_blank=True,
            help_text="OpenID Connect Front-Channel Logout: loaded in an iframe of the signed-out page.",
        )
        frontchannel_logout_session_required = StrictBooleanField(required=False, default=False)

    class Output(serializers.Serializer):
        client = ClientOutput(source="application", read_only=True)
        client_secret = serializers.CharField(
            allow_null=True, read_only=True, help_text="The raw secret, shown only in this response; null for public."
        )

    def get_queryset(self) -> QuerySet[Application]:
        return clients.client_list()

    @extend_schema(summary="List clients", responses=ClientOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ClientOutput(page, many=True).data)

    @extend_schema(
        summary="Register a client",
        description="The response holds the client's secret, the only time it is shown; only a keyed hash "
        "is stored. Registering a client for scope idp.manage needs every management permission.",
        request=Input,
        responses={201: Output},
    )
    def post(self, request: Request) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        caller = request_caller(request)
        issued = clients.client_create(caller=caller, **params.validated_data)
        return Response(self.Output(issued).data, status=201, headers=NO_STORE)


@endpoint(**MANAGEMENT_API)
class ClientSecretRotateApi(APIView):
    permission_classes = [HasPermission("idp.clients.manage")]

    class Input(StrictSerializer):
        grace_seconds = StrictIntegerField(
            min_value=0,
            max_value=clients.MAX_SECRET_GRACE_SECONDS,
            help_text="How long the current secret keeps working beside the new one (0: it stops now; "
            "at most 30 days).",
        )

    class Output(serializers.Serializer):
        client_id = serializers.CharField()
        client_secret = serializers.CharField(help_text="The new raw secret, shown only in this response.")
        previous_secret_expires_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(summary="Rotate a client's secret", request=Input, responses=Output)
    def post(self, request: Request, client_id: str) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        application = clients.client_get(client_id=client_id)
        rotated = clients.client_secret_rotate(
            application_id=application.pk, caller=request_caller(request), **params.validated_data
        )
        answer = {
            "client_id": application.client_id,
            "client_secret": rotated.client_secret,
            "previous_secret_expires_at": rotated.previous_secret_expires_at,
        }
        return Response(self.Output(answer).data, headers=NO_STORE)


@endpoint(**MANAGEMENT_API)
class ClientDisableApi(APIView):
    permission_classes = [HasPermission("idp.clients.manage")]

    class Input(StrictSerializer):
        reason = StrictCharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema(
        summary="Disable a client",
        description="It gets no more tokens and its tokens stop working. Not the client your own token "
        "was issued to. Disabling a disabled client changes nothing.",
        request=Input,
        responses=ClientOutput,
    )
    def post(self, request: Request, client_id: str) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        application = clients.client_get(client_id=client_id)
        caller = request_caller(request)
        application = clients.client_disable(
            application_id=application.pk, actor=caller.actor, caller=caller, **params.validated_data
        )
        return Response(ClientOutput(application).data)
