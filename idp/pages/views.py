from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import audit
from idp.models import Consent
from idp.oauth.consent import consent_get_for, consent_list_for
from idp.oauth.consent import consent_revoke as consent_withdraw


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a person lands after signing in directly (not through a client): who they are, and
    the applications they allowed to skip the consent page."""
    return render(request, "home.html", {"consents": consent_list_for(user=request.user)})


@login_required
@require_POST
def consent_revoke(request: HttpRequest, client_id: str) -> HttpResponse:
    """The home page's "Revoke access": the client loses the remembered consent and its tokens.
    Only the signed-in user's own consents: any other client id, existing or not, is the same 404."""
    try:
        consent = consent_get_for(user=request.user, client_id=client_id)
    except Consent.DoesNotExist:
        raise Http404("no such application") from None
    consent_withdraw(user=request.user, client_id=client_id, actor=audit.Actor.user(request.user))
    messages.success(request, f"{consent.application.name} no longer has access to your account.")
    return redirect("home")
