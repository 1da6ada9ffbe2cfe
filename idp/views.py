from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a person lands after signing in directly (not through a client)."""
    return render(request, "home.html")


def healthz(request: HttpRequest) -> HttpResponse:
    """The process answers; readiness (database, keys) comes with the operations issue."""
    return JsonResponse({"status": "ok"})
