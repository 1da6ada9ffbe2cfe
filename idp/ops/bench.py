"""The benchmark's floors (`make bench`, docs/performance.md): the cheapest requests this server can
answer, measured in the same run, through the same middleware and database connection as the real
endpoints, so each endpoint's throughput reads as a fraction of what the stack allows.

Routed only when settings.BENCH_FLOORS is on (IDP_BENCH_FLOORS=1, which only `make bench` sets).
"""

from django.http import HttpRequest, HttpResponse, JsonResponse

from idp.models import Application


def floor_hello(request: HttpRequest) -> HttpResponse:
    """No database, no cache: the cost of the server, Django and the middleware alone."""
    return JsonResponse({"ok": True})


def floor_db(request: HttpRequest) -> HttpResponse:
    """floor_hello plus one indexed SELECT by key (the unique client_id), the least any endpoint
    that looks up a credential can do."""
    found = Application.objects.filter(client_id=request.GET.get("client_id", "")).values_list("pk", flat=True).first()
    if found is None:
        return JsonResponse({"ok": False}, status=404)  # the harness's check request fails loudly
    return JsonResponse({"ok": True})
