"""The URLconf of the 500 tests: the real URLs plus views that fail, a page's and an API's. Test
configuration only; no production view raises on purpose."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from idp.http.policy import endpoint

# What the failure says: the log's traceback must hold it, an answer never.
FAILURE = "a bug that only the log may describe"


def _fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(FAILURE)


@endpoint(errors="json")
def _fail_program(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(FAILURE)


class _FailingApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> HttpResponse:
        raise RuntimeError(FAILURE)


urlpatterns = [
    path("fail/", _fail),
    path("oauth/fail/", _fail_program),
    path("api/v1/fail/", endpoint(errors="json")(_FailingApi.as_view())),
    path("", include("idp.urls")),
]
handler400 = "idp.http.errors.handler400"
handler403 = "idp.http.errors.handler403"
handler404 = "idp.http.errors.handler404"
handler500 = "idp.http.errors.handler500"
