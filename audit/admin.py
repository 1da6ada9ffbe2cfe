"""The audit trail in Django admin: read-only, built for a large table.

Nothing here writes: no add, change or delete for anyone, superusers included (the model and a
database trigger refuse changes anyway). Lists skip the second full COUNT (show_full_result_count)
and the per-choice counts (facets), sort only by time, and search by exact identifiers, never by
substring (a LIKE '%...%' reads the whole table).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit import Action
from audit.models import AuditEvent

FIELDS = (
    "id",
    "created_at",
    "action",
    "actor_type",
    "actor_id",
    "target_type",
    "target_id",
    "client_id",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
    "position",
    "hash",
)
SEARCHED = ("actor_id", "target_id", "client_id", "request_id", "action")
# The vocabularies of audit.Actor and of audit.record's callers: fixed lists cost no query, where
# a list of distinct values would read the whole column on every page view.
ACTOR_TYPES = ("user", "client", "apikey", "anonymous", "system")
OUTCOMES = ("success", "failure", "alert")


def exact_filter(field: str, values: tuple[str, ...]) -> type[admin.SimpleListFilter]:
    """A sidebar filter offering fixed values of one column (exact match)."""

    class ExactFilter(admin.SimpleListFilter):
        title = field.replace("_", " ")
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(value, value) for value in values]

        def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    ExactFilter.__name__ = ExactFilter.__qualname__ = f"{field.title().replace('_', '')}Filter"
    return ExactFilter


class ClientFilter(admin.AllValuesFieldListFilter):
    """The distinct client ids the trail mentions (client_id is indexed), without the blank one."""

    def __init__(self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str):
        super().__init__(field, request, params, model, model_admin, field_path)
        # A list serves as well as Django's QuerySet here (choices() only iterates it); the stubs want the latter.
        self.lookup_choices = [value for value in self.lookup_choices if value]  # type: ignore[assignment]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "actor", "target", "client_id", "outcome", "source_ip", "request_id")
    list_filter = (
        exact_filter("action", tuple(Action)),
        exact_filter("actor_type", ACTOR_TYPES),
        ("client_id", ClientFilter),
        exact_filter("outcome", OUTCOMES),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = SEARCHED
    search_help_text = "An exact actor id, target id, client id, request id or action."
    ordering = ("-id",)
    sortable_by = ("created_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice
    actions = None
    fields = FIELDS
    readonly_fields = FIELDS

    @admin.display(description="actor")
    def actor(self, event: AuditEvent) -> str:
        return f"{event.actor_type}:{event.actor_id}" if event.actor_id else event.actor_type

    @admin.display(description="target")
    def target(self, event: AuditEvent) -> str:
        return f"{event.target_type}:{event.target_id}" if event.target_type else ""

    @admin.display(description="data")
    def details(self, event: AuditEvent) -> str:
        # format_html escapes: data holds whatever a caller sent (a role description, a name).
        return format_html("<pre>{}</pre>", json.dumps(event.data, indent=2, sort_keys=True, ensure_ascii=False))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        # Identifiers are matched whole: a substring search (LIKE '%...%') reads the whole table.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(*[(name, term) for name in SEARCHED], _connector=Q.OR)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
