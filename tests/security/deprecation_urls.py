"""A test-only URLconf: deprecated views of each kind next to one that is not deprecated."""

from __future__ import annotations

from datetime import date

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from idp.deprecation import deprecated

SINCE = date(2026, 1, 1)
SUNSET = date(2026, 7, 1)
LINK = "https://idp.example/docs/changelog#v1-greeting"


def _greeting(request: HttpRequest) -> HttpResponse:
    if "missing" in request.GET:
        raise Http404("no such greeting")
    if "boom" in request.GET:
        raise RuntimeError("a bug in a deprecated view")
    return JsonResponse({"greeting": "hello"})


class GreetingApi(APIView):
    permission_classes = [AllowAny]

    class Input(serializers.Serializer):
        name = serializers.CharField(max_length=20)

    def get(self, request: Request) -> Response:
        if "missing" in request.query_params:
            raise ObjectDoesNotExist
        return Response({"greeting": "hello"})

    def post(self, request: Request) -> Response:
        params = self.Input(data=request.data)
        params.is_valid(raise_exception=True)
        return Response({"greeting": f"hello {params.validated_data['name']}"})


@deprecated(since=SINCE, sunset=SUNSET, link=LINK)
class DeprecatedGreetingApi(GreetingApi):
    pass


@deprecated(since=SINCE, sunset=SUNSET)
class DeprecatedPrivateApi(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({})


urlpatterns = [
    path("api/v1/greeting/", deprecated(since=SINCE, sunset=SUNSET, link=LINK)(_greeting)),
    path("api/v1/greeting-api/", DeprecatedGreetingApi.as_view()),
    path("api/v1/greeting-wrapped/", deprecated(since=SINCE, sunset=SUNSET, link=LINK)(GreetingApi.as_view())),
    path("api/v1/private/", DeprecatedPrivateApi.as_view()),
    path("api/v2/greeting-api/", GreetingApi.as_view()),
]

handler404 = "idp.errors.handler404"
handler500 = "idp.errors.handler500"
