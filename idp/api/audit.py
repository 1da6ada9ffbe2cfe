"""The audit trail over the management API (/api/v1/audit/): newest first, filtered by exact
values, paged by cursor. An adapter: parse the query, one queryset, serialize."""

from __future__ import annotations

import datetime

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import HasPermission
from audit.models import AuditEvent
from idp.api.pagination import IdCursorPagination
from idp.api.serializers import (
    AuditPartyOutput,
    AuditTimeField,
)
from idp.http.policy import MANAGEMENT_API, endpoint


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time. Python takes offsets up to +-23:59, PostgreSQL only up to +-15:59 (a
    larger one was a database error, answered 500): such a value is compared in UTC, and one that
    has no UTC equivalent (near year 1 or 9999) is a 400."""

    def filter(self, qs: QuerySet, value: datetime.datetime | None) -> QuerySet:
        offset = value.utcoffset() if value is not None else None
        if value is not None and offset is not None and abs(offset) > datetime.timedelta(hours=15, minutes=59):
            try:
                value = value.astimezone(datetime.UTC)
            except OverflowError:
                raise serializers.ValidationError({"since, until": ["date-time out of range"]}) from None
        return super().filter(qs, value)


@endpoint(**MANAGEMENT_API)
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
        # The serializer's metaclass takes declared fields out of the class, so this one does not
        # shadow Serializer.data at runtime; to the stubs it does.
        data = serializers.DictField(help_text="Details: identifiers and names, never a secret.")  # type: ignore[assignment]
        position = serializers.IntegerField(
            allow_null=True,
            help_text="The event's place in the tamper-evident chain (1-based, no gaps); null for about a "
            "second after it is recorded, until the sealer links it.",
        )
        hash = serializers.CharField(
            allow_null=True,
            help_text="SHA-256 (hex) of the hash at the position before and this event's fields: the "
            "tamper-evident chain that manage.py verify_audit checks. Null until the event is sealed.",
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
