"""The one place that maps exceptions to error responses, in the RFC 6749 §5.2 shape."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from idp.api.parsers import RequestTooLarge
from idp.http.policy import endpoint_of

log = logging.getLogger("idp.http.errors")


_DRF_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_token",
    403: "insufficient_scope",
    404: "not_found",
    405: "invalid_request",
    406: "invalid_request",
    415: "invalid_request",
    429: "rate_limited",
}


def _wants_json(request: HttpRequest) -> bool:
    """Programs get JSON errors, people pages: as the endpoint declares (idp.http.policy)."""
    return endpoint_of(request).errors == "json"


def _is_error_json(content: bytes) -> bool:
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def error_body_ensure(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Give a bodiless or HTML 4xx of a program's endpoint the RFC 6749 §5.2 JSON shape.

    Django's 405, and DOT's userinfo 401/403, answer with an empty body or a page; a client
    parsing errors should find the same shape on every endpoint. Headers (WWW-Authenticate,
    Allow, Retry-After) are kept.
    """
    if not (400 <= response.status_code < 500) or not _wants_json(request):
        return response
    if response.get("Content-Type", "").startswith("application/json") or getattr(response, "streaming", False):
        return response
    if not _is_error_json(response.content):
        code = _DRF_ERROR_CODES.get(response.status_code, "invalid_request")
        description = _describe(getattr(response, "reason_phrase", "") or "").lower()
        response.content = json.dumps({"error": code, "error_description": description}).encode()
    # oauthlib's errors raised while saving a token (a refresh lost to a concurrent one) come
    # without a Content-Type; their body is already the RFC shape.
    response["Content-Type"] = "application/json"
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    return response


def _describe(detail: Any) -> str:
    """A short ASCII description without quotes or backslashes (RFC 6749 §5.2 character set)."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        text = f"{field}: {_describe(value)}"
    elif isinstance(detail, list) and detail:
        text = _describe(detail[0])
    else:
        text = str(detail)
    cleaned = "".join(ch for ch in text if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\')
    return cleaned[:200]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, reshaped to {"error", "error_description"}; anything unmapped is a 500."""
    error_code = getattr(exc, "error_code", None)
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, ObjectDoesNotExist):
        # The same answer for "missing" and "not yours": a 404 never tells which.
        exc = drf_exceptions.NotFound("no such object")
    elif isinstance(exc, PermissionDenied):
        # A service refused (privilege escalation): its short reason is the description.
        exc = drf_exceptions.PermissionDenied(str(exc) or None)
        error_code = error_code or "access_denied"
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = drf_exceptions.ParseError("malformed request")
    response = exception_handler(exc, context)
    if response is None:
        log.exception("unhandled error in API view", exc_info=exc)
        return Response(server_error_body(getattr(context.get("request"), "request_id", "")), status=500)
    code = error_code or _DRF_ERROR_CODES.get(response.status_code, "invalid_request")
    response.data = {"error": code, "error_description": _describe(getattr(exc, "detail", ""))}
    if response.status_code == 401:
        # DRF puts the authenticator's challenge here (with error="invalid_token" for a bad token).
        response.setdefault("WWW-Authenticate", 'Bearer realm="idp"')
    return response


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": "not_found", "error_description": "no such endpoint"}, status=404)
    return render(request, "404.html", status=404)


def server_error_body(request_id: str) -> dict[str, str]:
    """A 500's answer names only the request id (audit.context, also the X-Request-ID header):
    support finds the traceback logged under it (idp.ops.logs); the client learns nothing else."""
    if not request_id:
        return {"error": "server_error"}
    return {"error": "server_error", "error_description": f"internal error, request id {request_id}"}


def handler500(request: HttpRequest) -> HttpResponse:
    request_id = getattr(request, "request_id", "")
    if _wants_json(request):
        return JsonResponse(server_error_body(request_id), status=500)
    return render(request, "500.html", {"request_id": request_id}, status=500)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": "invalid_request", "error_description": "malformed request"}, status=400)
    return render(request, "400.html", status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": "access_denied", "error_description": "forbidden"}, status=403)
    return render(request, "403.html", status=403)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """settings.CSRF_FAILURE_VIEW: our 403 page (or JSON), not Django's, which names the reason."""
    return handler403(request)
