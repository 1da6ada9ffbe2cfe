"""API keys in Django admin: a read-only register with a revoke action.

Keys are issued where their secret can be shown once (the dashboard, create_api_key); admin never
sees a secret and never edits a key in place. Revocation goes through apikeys.services, so it is
audited like every other path. Rotation schedules are edited per key on the dashboard; the sweeps'
own timing is the "Periodic tasks" section (django-celery-beat).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

import audit
from apikeys.models import ApiKey
from apikeys.services import apikey_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "owner", "scope", "state", "last_used_at", "expires_at", "next_rotation_at"]
    list_filter = ["revoked_at", "expires_at", "rotate_every", "application"]
    search_fields = ["public_id", "name", "user__username", "application__client_id"]
    list_select_related = ["user", "application"]
    readonly_fields = [
        "public_id",
        "name",
        "user",
        "application",
        "scope",
        "role_names",
        "created_at",
        "expires_at",
        "revoked_at",
        "rotate_every",
        "grace_period",
        "next_rotation_at",
        "rotated_from",
        "grace_ends_at",
        "ended_at",
        "last_used_at",
    ]
    fields = tuple(readonly_fields)
    actions = ["revoke"]

    @admin.display(description="owner")
    def owner(self, key: ApiKey) -> str:
        if key.user is not None:
            return key.user.get_username()
        assert key.application is not None  # apikeys_apikey_has_owner: a key without a user has a client
        return f"client {key.application.client_id}"

    @admin.display(description="state")
    def state(self, key: ApiKey) -> str:
        return key.state(timezone.now()).label

    @admin.display(description="roles")
    def role_names(self, key: ApiKey) -> str:
        return ", ".join(role.name for role in key.roles.all())

    @admin.action(description="Revoke the selected API keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = audit.Actor.user(request.user)
        for key in queryset.filter(revoked_at__isnull=True):
            apikey_revoke(key_id=key.pk, actor=actor, reason="revoked in admin")
        self.message_user(request, "The selected keys are revoked.", messages.SUCCESS)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # Admin never edits a key, so Django's change permission is what allows revoking one.
        return request.user.has_perm("apikeys.change_apikey")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
