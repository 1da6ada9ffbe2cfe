from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

import idp.converters  # noqa: F401 - client_id in the routes below
from idp.federation import views as federation
from idp.http.policy import endpoint, endpoint_for_namespace
from idp.oauth.views import logout as oauth_logout
from idp.ops import bench as bench_views
from idp.ops import views as ops_views
from idp.pages import account, dashboard, factors, security, signin, views
from idp.sessions import pages as session_pages

urlpatterns = [
    path("", include("idp.oauth.urls")),
    path("", views.home, name="home"),
    path("consents/<client_id:client_id>/revoke/", views.consent_revoke, name="consent-revoke"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    # LoginView already marks the password as a sensitive POST parameter.
    path("accounts/login/", signin.SignInView.as_view(), name="login"),
    path("accounts/logout/", oauth_logout.SignOutView.as_view(), name="logout"),
    # The second step of signing in (idp.pages.factors); codes are sensitive POST parameters.
    path("accounts/login/verify/", factors.FactorVerifyView.as_view(), name="mfa-verify"),
    path("accounts/login/enrol/", factors.FactorEnrolView.as_view(), name="mfa-enrol"),
    path("accounts/login/recovery-codes/", factors.FirstRecoveryCodesView.as_view(), name="mfa-first-recovery-codes"),
    # Account self-service (idp.pages.account): password reset by e-mail, e-mail verification
    # links, self-registration (a 404 unless IDP_SELF_REGISTRATION).
    path("accounts/password/reset/", account.ResetRequestView.as_view(), name="password-reset"),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="registration/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "accounts/password/reset/<str:uidb64>/<str:token>/",
        account.ResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/password_reset_complete.html"),
        name="password-reset-complete",
    ),
    path("accounts/email/verify/<str:uidb64>/<str:token>/", account.EmailVerifyView.as_view(), name="email-verify"),
    path("accounts/register/", account.RegisterView.as_view(), name="register"),
    path("accounts/register/sent/", account.RegisterDoneView.as_view(), name="register-done"),
    # Signing in through an upstream provider (idp.federation).
    path("accounts/upstream/<str:slug>/", federation.UpstreamStartView.as_view(), name="upstream-start"),
    path("accounts/upstream/<str:slug>/callback/", federation.UpstreamCallbackView.as_view(), name="upstream-callback"),
    path("accounts/link-upstream/", federation.UpstreamLinkView.as_view(), name="upstream-link"),
    # Passkeys (django-otp-webauthn's JSON ceremonies, as idp.mfa.passkeys adapts them): JSON
    # errors, so under a path of their own rather than among the /accounts/ pages.
    path("passkeys/", include("idp.mfa.passkey_urls")),
    path("admin/", admin.site.urls),  # its templates carry style attributes: see endpoint_for_namespace below
    # Staff pages on the dashboard over idp's own data; before the include, so they win.
    path("dashboard/signing-keys/", dashboard.SigningKeyListView.as_view(), name="signing-keys"),
    path("dashboard/activity/", dashboard.ActivityView.as_view(), name="activity"),
    path("dashboard/account/", account.AccountView.as_view(), name="account"),
    path("dashboard/account/email/", account.EmailChangeView.as_view(), name="account-email"),
    path("dashboard/account/email/resend/", account.VerificationResendView.as_view(), name="account-email-resend"),
    path("dashboard/password/", account.PasswordChangePageView.as_view(), name="account-password"),
    path("dashboard/security/", security.SecurityView.as_view(), name="security"),
    path("dashboard/security/app/start/", security.AppStartView.as_view(), name="security-app-start"),
    path("dashboard/security/app/confirm/", security.AppConfirmView.as_view(), name="security-app-confirm"),
    path("dashboard/security/app/remove/", security.AppRemoveView.as_view(), name="security-app-remove"),
    path(
        "dashboard/security/passkeys/<object_id:credential_id>/rename/",
        security.PasskeyRenameView.as_view(),
        name="security-passkey-rename",
    ),
    path(
        "dashboard/security/passkeys/<object_id:credential_id>/remove/",
        security.PasskeyRemoveView.as_view(),
        name="security-passkey-remove",
    ),
    path("dashboard/security/recovery-codes/", security.RecoveryCodesView.as_view(), name="security-recovery-codes"),
    path(
        "dashboard/signing-keys/<str:algorithm>/rotate/",
        dashboard.SigningKeyRotateView.as_view(),
        name="signing-key-rotate",
    ),
    path("dashboard/sessions/", session_pages.SessionListView.as_view(), name="sessions"),
    path("dashboard/sessions/end-all/", session_pages.SessionsEndAllView.as_view(), name="sessions-end-all"),
    path("dashboard/sessions/<str:public_id>/end/", session_pages.SessionEndView.as_view(), name="session-end"),
    path("dashboard/", include("apikeys.urls")),
    path("api/v1/", include("idp.api.urls")),
    # Swagger UI, its files served from our static files (drf-spectacular-sidecar), never a CDN;
    # the split view serves its init script as a file, so the page needs no inline script (CSP).
    # Swagger UI sets styles as it renders (CSP: inline styles, its page only).
    path(
        "api/docs/",
        endpoint(inline_styles=True, cache="no-store", errors="json")(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny]
            )
        ),
        name="api-docs",
    ),
]

if settings.BENCH_FLOORS:
    # The benchmark's floors (idp.ops.bench), routed only when `make bench` asks for them.
    urlpatterns += [
        path("bench/floor-hello", bench_views.floor_hello, name="bench-floor-hello"),
        path("bench/floor-db", bench_views.floor_db, name="bench-floor-db"),
    ]

# Django admin is not ours to decorate: its pages, declared by namespace.
endpoint_for_namespace("admin", inline_styles=True)

handler400 = "idp.http.errors.handler400"
handler403 = "idp.http.errors.handler403"
handler404 = "idp.http.errors.handler404"
handler500 = "idp.http.errors.handler500"
