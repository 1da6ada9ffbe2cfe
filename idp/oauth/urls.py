"""The protocol endpoints. The namespace is DOT's, because DOT reverses these names (the issuer
is derived from the discovery URL, which sits at the server root)."""

from django.urls import path

from idp.oauth import views

app_name = "oauth2_provider"

urlpatterns = [
    path(
        ".well-known/openid-configuration", views.ConnectDiscoveryInfoView.as_view(), name="oidc-connect-discovery-info"
    ),
    path(".well-known/jwks.json", views.JwksInfoView.as_view(), name="jwks-info"),
    path("oauth/authorize/", views.AuthorizationView.as_view(), name="authorize"),
    path("oauth/token/", views.TokenView.as_view(), name="token"),
    path("oauth/revoke/", views.RevokeTokenView.as_view(), name="revoke-token"),
    path("oauth/introspect/", views.IntrospectTokenView.as_view(), name="introspect"),
    path("oauth/userinfo/", views.UserInfoView.as_view(), name="user-info"),
    path("oauth/logout/", views.LogoutView.as_view(), name="rp-initiated-logout"),
]
