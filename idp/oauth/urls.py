"""The protocol endpoints. The namespace is DOT's, because DOT reverses these names (the issuer
is derived from the discovery URL, which sits at the server root)."""

from django.urls import path

from idp.oauth.views import authorize, discovery, introspect, logout, revoke, token, userinfo

app_name = "oauth2_provider"

urlpatterns = [
    path(
        ".well-known/openid-configuration",
        discovery.ConnectDiscoveryInfoView.as_view(),
        name="oidc-connect-discovery-info",
    ),
    path(".well-known/jwks.json", discovery.JwksInfoView.as_view(), name="jwks-info"),
    path("oauth/authorize/", authorize.AuthorizationView.as_view(), name="authorize"),
    path("oauth/token/", token.TokenView.as_view(), name="token"),
    path("oauth/revoke/", revoke.RevokeTokenView.as_view(), name="revoke-token"),
    path("oauth/introspect/", introspect.IntrospectTokenView.as_view(), name="introspect"),
    path("oauth/userinfo/", userinfo.UserInfoView.as_view(), name="user-info"),
    path("oauth/logout/", logout.LogoutView.as_view(), name="rp-initiated-logout"),
]
