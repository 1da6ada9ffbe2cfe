"""The management API for users' sessions (/api/v1/users/{id}/sessions): list them, end one, end
all. Adapters over idp.sessions; the caller needs idp.sessions.end and must hold everything the
user holds (idp.sessions.services.staff_may_end_check)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from accounts.models import SESSIONS_END
from accounts.permissions import HasPermission, request_caller
from idp.api.serializers import StrictCharField, StrictSerializer
from idp.http.policy import MANAGEMENT_API, endpoint
from idp.models import BrowserSession
from idp.sessions import selectors, services


class SessionOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id", help_text="The session's public id (never its key).")
    device = serializers.CharField(help_text="Browser and system, from the user agent.")
    user_agent = serializers.CharField()
    ip_address = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_active_at = serializers.DateTimeField(help_text="Updated about once a minute at most.")
    applications = serializers.ListField(child=serializers.CharField(), help_text="Clients signed in through it.")


class EndInput(StrictSerializer):
    reason = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


@endpoint(**MANAGEMENT_API)
class UserSessionListApi(GenericAPIView):
    permission_classes = [HasPermission(SESSIONS_END)]
    pagination_class = None

    def get_queryset(self) -> QuerySet[BrowserSession]:
        return BrowserSession.objects.none()

    @extend_schema(
        summary="List a user's sessions",
        description="Every browser session the user is signed in with. You must hold every role and permission "
        "the user holds.",
        responses=SessionOutput(many=True),
    )
    def get(self, request: Request, user_id: int) -> Response:
        user = account_selectors.user_get(user_id=user_id)
        services.staff_may_end_check(caller=request_caller(request), user=user)
        rows = list(selectors.sessions_of_user(user_id=user.pk))
        return Response(SessionOutput(selectors.session_views(rows), many=True).data)


@endpoint(**MANAGEMENT_API)
class UserSessionEndApi(APIView):
    permission_classes = [HasPermission(SESSIONS_END)]

    @extend_schema(
        summary="End one of a user's sessions",
        description="The browser is signed out at its next request, the tokens issued through the session are "
        "revoked and its clients are told (back-channel logout). You must hold every role and permission the "
        "user holds.",
        responses={204: None},
    )
    def delete(self, request: Request, user_id: int, session_id: str) -> Response:
        user = account_selectors.user_get(user_id=user_id)
        services.staff_sessions_end(caller=request_caller(request), user=user, reason="api", public_id=session_id)
        return Response(status=204)


@endpoint(**MANAGEMENT_API)
class UserSessionsEndApi(APIView):
    permission_classes = [HasPermission(SESSIONS_END)]

    class Output(serializers.Serializer):
        ended = serializers.IntegerField(help_text="How many sessions ended.")

    @extend_schema(
        summary="End all of a user's sessions",
        description="Every session of the user ends, as one would. Ending none changes nothing.",
        request=EndInput,
        responses=Output,
    )
    def post(self, request: Request, user_id: int) -> Response:
        params = EndInput(data=request.data)
        params.is_valid(raise_exception=True)
        user = account_selectors.user_get(user_id=user_id)
        ended = services.staff_sessions_end(
            caller=request_caller(request), user=user, reason=params.validated_data["reason"]
        )
        return Response(self.Output({"ended": ended}).data)
