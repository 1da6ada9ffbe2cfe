"""Pagination of the management API's lists."""

from __future__ import annotations

import re
from typing import cast

from rest_framework import exceptions, pagination
from rest_framework.request import Request

# PostgreSQL's OFFSET is a bigint: a larger number from a query string would be a database error.
MAX_OFFSET = 1_000_000_000
# A row id in a cursor: digits that fit PostgreSQL's bigint.
_ID = re.compile(r"[1-9][0-9]{0,17}")
# What DRF's encode_cursor makes: standard base64 (b64decode would skip other characters).
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """?limit=&offset=, 50 by default and at most 200 a page; a bad number falls back to the default."""

    default_limit = 50
    max_limit = 200

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)


class IdCursorPagination(pagination.CursorPagination):
    """?cursor=&limit= over a list ordered newest first by id, 50 by default and at most 200 a page
    (a bad limit falls back to the default, as in LimitOffsetPagination).

    A cursor is a position (an id), not an offset: rows appended while a reader walks the pages
    land before the first page and neither shift nor repeat what follows. The id is unique, so no
    two rows share a position. A cursor that is not one of ours is a 400, never a 404 or a 500.
    """

    ordering = "-id"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    page_size_query_description = "Results per page: 50 by default, at most 200."
    cursor_query_description = "The next or previous link's cursor; omit it for the newest events."

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        invalid = exceptions.ValidationError({self.cursor_query_param: ["invalid cursor"]})
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is not None and not _BASE64.fullmatch(encoded):
            raise invalid
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise invalid from None
        # DRF filters on the position as given: a non-number would fail there with a ValueError, a
        # number past bigint in the database. Decoded, the position is the query string's text
        # (djangorestframework-stubs type it int, as it is when encoding).
        if cursor is not None and cursor.position is not None and not _ID.fullmatch(cast(str, cursor.position)):
            raise invalid
        return cursor
