from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a person lands after signing in directly (not through a client)."""
    return render(request, "home.html")


def healthz(request: HttpRequest) -> HttpResponse:
    """The process answers; readiness (database, keys) comes with the operations issue."""
    return JsonResponse({"status": "ok"})


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
