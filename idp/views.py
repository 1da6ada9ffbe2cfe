from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import audit
from idp import health, selectors, services
from idp.metrics import CONTENT_TYPE, metrics_access_allowed, metrics_exposition
from idp.models import Consent


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a person lands after signing in directly (not through a client): who they are, and
    the applications they allowed to skip the consent page."""
    return render(request, "home.html", {"consents": selectors.consent_list_for(user=request.user)})


@login_required
@require_POST
def consent_revoke(request: HttpRequest, client_id: str) -> HttpResponse:
    """The home page's "Revoke access": the client loses the remembered consent and its tokens.
    Only the signed-in user's own consents: any other client id, existing or not, is the same 404."""
    try:
        consent = selectors.consent_get_for(user=request.user, client_id=client_id)
    except Consent.DoesNotExist:
        raise Http404("no such application") from None
    services.consent_revoke(user=request.user, client_id=client_id, actor=audit.Actor.user(request.user))
    messages.success(request, f"{consent.application.name} no longer has access to your account.")
    return redirect("home")


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches neither the database nor Redis, so their outage
    never gets a healthy process restarted."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: database, Redis, migrations and the RS256 signing key (idp.health). A failure
    names its checks and nothing more."""
    failed = health.readiness_failures()
    response = (
        JsonResponse({"status": "unavailable", "failed": failed}, status=503)
        if failed
        else JsonResponse({"status": "ready"})
    )
    response["Cache-Control"] = "no-store"
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for allowed networks and the metrics token only (idp.metrics). Anyone
    else gets the same 404 as any unknown path: nothing tells that the endpoint exists."""
    if not metrics_access_allowed(request):
        raise Http404("no such page")
    response = HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response


class SignInView(LoginView):
    """Django's sign-in page; when a client sent login_hint (OIDC Core §3.1.2.1) with the
    authorization request it comes back from, the username field starts with it."""

    def get_initial(self) -> dict[str, Any]:
        initial = super().get_initial()
        next_url = self.request.GET.get("next", "")
        if next_url.startswith("/oauth/authorize/"):
            hint = parse_qs(urlsplit(next_url).query).get("login_hint", [""])[0]
            if hint and len(hint) <= 150:
                initial["username"] = hint
        return initial
