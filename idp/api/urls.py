"""The management API's URL map: /api/v1/ (idp/urls.py includes it), versioned in the path."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

import idp.converters  # noqa: F401 - object_id and client_id in the routes below
from idp.api import accounts, audit, clients, sessions
from idp.http.policy import MANAGEMENT_API, endpoint

urlpatterns = [
    path("users/", accounts.UserListCreateApi.as_view(), name="api-users"),
    path("users/<object_id:user_id>/deactivate/", accounts.UserDeactivateApi.as_view(), name="api-user-deactivate"),
    path("users/<object_id:user_id>/mfa-reset/", accounts.UserMfaResetApi.as_view(), name="api-user-mfa-reset"),
    path("users/<object_id:user_id>/sessions/", sessions.UserSessionListApi.as_view(), name="api-user-sessions"),
    path(
        "users/<object_id:user_id>/sessions/end/", sessions.UserSessionsEndApi.as_view(), name="api-user-sessions-end"
    ),
    path(
        "users/<object_id:user_id>/sessions/<str:session_id>/",
        sessions.UserSessionEndApi.as_view(),
        name="api-user-session",
    ),
    path("permissions/", accounts.PermissionListCreateApi.as_view(), name="api-permissions"),
    path("roles/", accounts.RoleListCreateApi.as_view(), name="api-roles"),
    path("roles/<object_id:role_id>/", accounts.RoleDetailApi.as_view(), name="api-role"),
    path("role-assignments/", accounts.RoleAssignmentListCreateApi.as_view(), name="api-role-assignments"),
    path(
        "role-assignments/<object_id:assignment_id>/",
        accounts.RoleAssignmentRevokeApi.as_view(),
        name="api-role-assignment",
    ),
    path("clients/", clients.ClientListCreateApi.as_view(), name="api-clients"),
    path(
        "clients/<client_id:client_id>/rotate-secret/",
        clients.ClientSecretRotateApi.as_view(),
        name="api-client-rotate-secret",
    ),
    path("clients/<client_id:client_id>/disable/", clients.ClientDisableApi.as_view(), name="api-client-disable"),
    path("audit/", audit.AuditEventListApi.as_view(), name="api-audit"),
    # The schema describes the API, not its data: public, like the discovery document.
    path(
        "schema/",
        endpoint(**MANAGEMENT_API)(
            SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny])
        ),
        name="api-schema",
    ),
]
