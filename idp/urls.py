from django.conf import settings
from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from idp import api, bench_views, dashboard, views
from idp.oauth import views as oauth_views


class ClientIdConverter:
    """A client_id in a URL: the characters DOT's generator and RFC 3986's unreserved set use, so a
    NUL byte or a 10 KB value never reaches the database."""

    regex = "[A-Za-z0-9._~-]{1,100}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ClientIdConverter, "client_id")

# The management API. Versioned in the path; everything under /api/ answers errors as JSON.
api_v1 = [
    path("", include("accounts.urls")),
    path("clients/", api.ClientListCreateApi.as_view(), name="api-clients"),
    path(
        "clients/<client_id:client_id>/rotate-secret/",
        api.ClientSecretRotateApi.as_view(),
        name="api-client-rotate-secret",
    ),
    path("clients/<client_id:client_id>/disable/", api.ClientDisableApi.as_view(), name="api-client-disable"),
    path("audit/", api.AuditEventListApi.as_view(), name="api-audit"),
    # The schema describes the API, not its data: public, like the discovery document.
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
]

urlpatterns = [
    path("", include("idp.oauth.urls")),
    path("", views.home, name="home"),
    path("consents/<client_id:client_id>/revoke/", views.consent_revoke, name="consent-revoke"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    # LoginView already marks the password as a sensitive POST parameter.
    path("accounts/login/", views.SignInView.as_view(), name="login"),
    path("accounts/logout/", oauth_views.SignOutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Staff pages on the dashboard over idp's own data; before the include, so they win.
    path("dashboard/signing-keys/", dashboard.SigningKeyListView.as_view(), name="signing-keys"),
    path("dashboard/activity/", dashboard.ActivityView.as_view(), name="activity"),
    path(
        "dashboard/signing-keys/<str:algorithm>/rotate/",
        dashboard.SigningKeyRotateView.as_view(),
        name="signing-key-rotate",
    ),
    path("dashboard/", include("apikeys.urls")),
    path("api/v1/", include(api_v1)),
    # Swagger UI, its files served from our static files (drf-spectacular-sidecar), never a CDN;
    # the split view serves its init script as a file, so the page needs no inline script (CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="api-docs",
    ),
]

if settings.BENCH_FLOORS:
    # The benchmark's floors (idp.bench_views), routed only when `make bench` asks for them.
    urlpatterns += [
        path("bench/floor-hello", bench_views.floor_hello, name="bench-floor-hello"),
        path("bench/floor-db", bench_views.floor_db, name="bench-floor-db"),
    ]

handler400 = "idp.errors.handler400"
handler403 = "idp.errors.handler403"
handler404 = "idp.errors.handler404"
handler500 = "idp.errors.handler500"
