"""The management API's request body parser."""

from __future__ import annotations

import json
from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions, parsers
from rest_framework.utils.json import strict_constant


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    error_code = "invalid_request"
    default_detail = "request body is too large"


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 §4 leaves repeated names undefined; Python keeps the last, another reader (a proxy,
    # an audit pipeline) may keep the first. A repeated field is refused, as RFC 6749 §3.1 refuses
    # a repeated parameter.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise DuplicateKey
    return result


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, hardened: a body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused before it is
    read whole (DRF reads the stream itself, past Django's own limit), and nesting too deep for
    Python's json module is a 400, not a RecursionError answered 500."""

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge()
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=strict_constant, object_pairs_hook=_unique_keys)
        except UnicodeDecodeError:
            raise exceptions.ParseError("request body is not UTF-8") from None
        except DuplicateKey:
            raise exceptions.ParseError("request body repeats a field") from None
        except (ValueError, RecursionError):
            raise exceptions.ParseError("request body is not valid JSON") from None
