"""The management API for clients (/api/v1/clients/) and the audit trail (/api/v1/audit/).
Adapters only: parse input, make one selector or service call, serialize."""

from __future__ import annotations

import datetime

import django_filters
from django.conf import settings
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasPermission, request_caller
from audit.models import AuditEvent
from idp import selectors, services
from idp.models import Application
from idp.pagination import IdCursorPagination
from idp.serializers import (
    AuditPartyOutput,
    AuditTimeField,
    ClientOutput,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    uri_field,
)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time. Python takes offsets up to +-23:59, PostgreSQL only up to +-15:59 (a
    larger one was a database error, answered 500): such a value is compared in UTC, and one that
    has no UTC equivalent (near year 1 or 9999) is a 400."""

    def filter(self, qs: QuerySet, value: datetime.datetime | None) -> QuerySet:
        offset = value.utcoffset() if value is not None else None
        if offset is not None and abs(offset) > datetime.timedelta(hours=15, minutes=59):
            try:
                value = value.astimezone(datetime.UTC)
            except OverflowError:
                raise serializers.ValidationError({"since, until": ["date-time out of range"]}) from None
        return super().filter(qs, value)


# RFC 6749 §5.1 asks the same of token responses: a response carrying a secret is never cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class ClientListCreateApi(GenericAPIView):
    permission_classes = [HasPermission("idp.clients.read", write="idp.clients.manage")]
    ordering_fields = ["id", "name", "created"]
    ordering = ["id"]

    class Filter(django_filters.FilterSet):
        name = django_filters.CharFilter(lookup_expr="icontains", max_length=255)
        grant = django_filters.ChoiceFilter(choices=[(name, name) for name in services.GRANT_TYPES], method="by_grant")

        class Meta:
            model = Application
            fields = ["name", "client_type", "grant", "is_active"]

        def by_grant(self, queryset: QuerySet[Application], name: str, value: str) -> QuerySet[Application]:
            return queryset.filter(authorization_grant_type=services.GRANT_TYPES[value])

    filterset_class = Filter

    class Input(StrictSerializer):
        name = StrictCharField(max_length=255)
        client_type = serializers.ChoiceField(choices=[Application.CLIENT_CONFIDENTIAL, Application.CLIENT_PUBLIC])
        grant = serializers.ChoiceField(choices=sorted(services.GRANT_TYPES))
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

    class Output(serializers.Serializer):
        client = ClientOutput(source="application", read_only=True)
        client_secret = serializers.CharField(
            allow_null=True, read_only=True, help_text="The raw secret, shown only in this response; null for public."
        )

    def get_queryset(self) -> QuerySet[Application]:
        return selectors.client_list()

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
        issued = services.client_create(caller=caller, **params.validated_data)
        return Response(self.Output(issued).data, status=201, headers=NO_STORE)


class ClientSecretRotateApi(APIView):
    permission_classes = [HasPermission("idp.clients.manage")]

    class Input(StrictSerializer):
        grace_seconds = StrictIntegerField(
            min_value=0,
            max_value=services.MAX_SECRET_GRACE_SECONDS,
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
        application = selectors.client_get(client_id=client_id)
        rotated = services.client_secret_rotate(
            application_id=application.pk, caller=request_caller(request), **params.validated_data
        )
        answer = {
            "client_id": application.client_id,
            "client_secret": rotated.client_secret,
            "previous_secret_expires_at": rotated.previous_secret_expires_at,
        }
        return Response(self.Output(answer).data, headers=NO_STORE)


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
        application = selectors.client_get(client_id=client_id)
        caller = request_caller(request)
        application = services.client_disable(
            application_id=application.pk, actor=caller.actor, caller=caller, **params.validated_data
        )
        return Response(ClientOutput(application).data)


class AuditEventListApi(GenericAPIView):
    """The audit trail, newest first, filtered by exact values and paged by cursor."""

    permission_classes = [HasPermission("audit.read")]
    # The cursor fixes the order (newest first, by id): no ?ordering, no offsets.
    filter_backends = [DjangoFilterBackend]
    pagination_class = IdCursorPagination

    class Filter(django_filters.FilterSet):
        action = django_filters.CharFilter(
            method="by_action",
            max_length=64,
            validators=[RegexValidator(r"^[a-z_]+(\.[a-z_]+)*\.?$", "not an action name")],
            help_text="An action, e.g. apikey.revoked; a prefix ending in a dot (apikey.) matches every "
            "action of that family.",
        )
        actor_type = django_filters.CharFilter(max_length=16, help_text="user, client, apikey, anonymous or system.")
        actor_id = django_filters.CharFilter(max_length=255, help_text="With actor_type: who, e.g. a user id.")
        target_type = django_filters.CharFilter(max_length=64, help_text="e.g. user, client, accounts.role.")
        target_id = django_filters.CharFilter(max_length=255, help_text="With target_type: what, e.g. a role id.")
        client_id = django_filters.CharFilter(max_length=255, help_text="The OAuth client the event concerns.")
        outcome = django_filters.CharFilter(max_length=16, help_text="success, failure, alert, reuse_detected, ...")
        request_id = django_filters.CharFilter(
            max_length=64, help_text="The X-Request-ID of the request that recorded the event."
        )
        since = UtcDateTimeFilter(
            field_name="created_at",
            lookup_expr="gte",
            help_text="ISO 8601 date-time, UTC unless it has an offset (a date alone: its midnight UTC). "
            "Events at or after it.",
        )
        until = UtcDateTimeFilter(
            field_name="created_at",
            lookup_expr="lt",
            help_text="ISO 8601 date-time, as since. Events before it (exclusive).",
        )

        class Meta:
            model = AuditEvent
            fields: list[str] = []

        def by_action(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
            if value.endswith("."):
                return queryset.filter(action__startswith=value)
            return queryset.filter(action=value)

    filterset_class = Filter
    # An unknown parameter is a 400, not ignored: a misspelt filter (?actorid=) would otherwise
    # answer the whole trail, and an investigator would read it as the answer to the question.
    PARAMETERS = frozenset(Filter.base_filters) | {"cursor", "limit"}

    class Output(serializers.Serializer):
        id = serializers.IntegerField()
        time = AuditTimeField(source="created_at")
        action = serializers.CharField()
        actor = serializers.SerializerMethodField()
        target = serializers.SerializerMethodField(help_text="Empty type and id when the event has no target.")
        client_id = serializers.CharField(help_text="Empty when the event concerns no client.")
        outcome = serializers.CharField(help_text="success, failure, alert, reuse_detected, ...")
        source_ip = serializers.CharField(help_text="Empty when no request recorded it (a task, a command).")
        user_agent = serializers.CharField()
        request_id = serializers.CharField()
        data = serializers.DictField(help_text="Details: identifiers and names, never a secret.")
        hash = serializers.CharField(
            help_text="SHA-256 (hex) of the previous event's hash and this event's fields: the tamper-evident "
            "chain that manage.py verify_audit checks."
        )

        @extend_schema_field(AuditPartyOutput)
        def get_actor(self, event: AuditEvent) -> dict[str, str]:
            return {"type": event.actor_type, "id": event.actor_id}

        @extend_schema_field(AuditPartyOutput)
        def get_target(self, event: AuditEvent) -> dict[str, str]:
            return {"type": event.target_type, "id": event.target_id}

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.all()

    @extend_schema(
        summary="List audit events",
        description="Newest first. Every filter is an exact match (action also takes a family prefix); "
        "they combine with AND. Follow the next link to walk back in time: events recorded meanwhile "
        "never shift or repeat a page. An unknown query parameter is a 400.",
        responses=Output(many=True),
    )
    def get(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - self.PARAMETERS)
        if unknown:
            raise serializers.ValidationError({unknown[0][:40]: ["unknown parameter"]})
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.Output(page, many=True).data)
