"""Pagination of the management API's lists."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.request import Request

# PostgreSQL's OFFSET is a bigint: a larger number from a query string would be a database error.
MAX_OFFSET = 1_000_000_000


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """?limit=&offset=, 50 by default and at most 200 a page; a bad number falls back to the default."""

    default_limit = 50
    max_limit = 200

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
