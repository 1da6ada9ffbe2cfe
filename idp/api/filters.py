"""Filter backends of the management API's lists (REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"])."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import filters


class OrderingFilter(filters.OrderingFilter):
    """?ordering=name,-id by the view's own ordering_fields only, an explicit allowlist.

    DRF falls back to every serializer field, or every model field with "__all__"; ordering by a
    column can leak what a list does not show (ordering users by password hash), so here a view
    that names no fields cannot be reordered at all. Unknown fields are ignored, as in DRF.
    """

    def get_valid_fields(self, queryset: QuerySet[Any] | None, view: Any, context: Any = None) -> list[tuple[str, str]]:
        fields = getattr(view, "ordering_fields", None)
        if not isinstance(fields, list | tuple):
            return []
        return [(name, name) for name in fields]

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        fields = [name for name, _ in self.get_valid_fields(None, view)]
        for parameter in parameters:
            parameter["description"] = (
                f"Comma-separated fields to order by, each of {', '.join(fields)}; prefix - for descending."
            )
        return parameters
