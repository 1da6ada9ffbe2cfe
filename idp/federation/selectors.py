"""Reads about upstream providers."""

from __future__ import annotations

import re

from django.db.models import QuerySet

from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Role
from idp.models import UpstreamProvider

SLUG = re.compile(r"[-a-zA-Z0-9_]{1,40}")  # a SlugField's alphabet, UpstreamProvider.slug's length


def upstream_list_enabled() -> QuerySet[UpstreamProvider]:
    """The upstreams the sign-in page offers, by name."""
    return UpstreamProvider.objects.filter(is_enabled=True).only("slug", "display_name").order_by("display_name")


def upstream_enabled_get(*, slug: str) -> UpstreamProvider | None:
    """An enabled upstream by its slug; None for one unknown or switched off (the same answer)."""
    if SLUG.fullmatch(slug) is None:
        return None  # never queried: a NUL byte would be a database error, not a miss
    return UpstreamProvider.objects.filter(slug=slug, is_enabled=True).first()


def role_mappable(role: Role) -> bool:
    """Whether an upstream may hand out this role. Least privilege: never the administrator role,
    nor a role carrying any management permission (what makes someone an administrator here)."""
    if role.name == ADMIN_ROLE and role.application_id is None:
        return False
    return not role.permissions.filter(codename__in=list(MANAGEMENT_PERMISSIONS)).exists()
