from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from idp import views

urlpatterns = [
    path("", include("idp.oauth.urls")),
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # LoginView already marks the password as a sensitive POST parameter.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler400 = "idp.errors.handler400"
handler403 = "idp.errors.handler403"
handler404 = "idp.errors.handler404"
handler500 = "idp.errors.handler500"
