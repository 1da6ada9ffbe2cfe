"""The dashboard's pages, under /dashboard/ (idp.urls)."""

from django.urls import path

from apikeys import views

app_name = "apikeys"

urlpatterns = [
    path("", views.ApiKeyListView.as_view(), name="list"),
    path("keys/new/", views.ApiKeyCreateView.as_view(), name="create"),
    path("keys/<int:key_id>/rotate/", views.ApiKeyRotateView.as_view(), name="rotate"),
    path("keys/<int:key_id>/reveal/", views.ApiKeyRevealView.as_view(), name="reveal"),
    path("keys/<int:key_id>/schedule/", views.ApiKeyScheduleView.as_view(), name="schedule"),
    path("keys/<int:key_id>/revoke/", views.ApiKeyRevokeView.as_view(), name="revoke"),
]
