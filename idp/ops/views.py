"""The operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from idp.http.policy import endpoint
from idp.ops import health
from idp.ops.metrics import CONTENT_TYPE, metrics_access_allowed, metrics_exposition


@endpoint(https_only=False)
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches neither the database nor Redis, so their outage
    never gets a healthy process restarted."""
    return JsonResponse({"status": "ok"})


@endpoint(https_only=False)
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: database, Redis, migrations and the RS256 signing key (idp.ops.health). A failure
    names its checks and nothing more."""
    failed = health.readiness_failures()
    response = (
        JsonResponse({"status": "unavailable", "failed": failed}, status=503)
        if failed
        else JsonResponse({"status": "ready"})
    )
    response["Cache-Control"] = "no-store"
    return response


@endpoint(https_only=False)
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for allowed networks and the metrics token only (idp.ops.metrics). Anyone
    else gets the same 404 as any unknown path: nothing tells that the endpoint exists."""
    if not metrics_access_allowed(request):
        raise Http404("no such page")
    response = HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
