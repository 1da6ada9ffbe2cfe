"""/api/v1/ routes of accounts' management API; idp/urls.py includes them."""

from django.urls import path, register_converter

from accounts import api


class ObjectIdConverter:
    """A database id: 1 to 18 digits, so it always fits PostgreSQL's bigint (a longer number
    would be a database error, not a 404)."""

    regex = "[1-9][0-9]{0,17}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(ObjectIdConverter, "object_id")

urlpatterns = [
    path("users/", api.UserListCreateApi.as_view(), name="api-users"),
    path("users/<object_id:user_id>/deactivate/", api.UserDeactivateApi.as_view(), name="api-user-deactivate"),
    path("permissions/", api.PermissionListCreateApi.as_view(), name="api-permissions"),
    path("roles/", api.RoleListCreateApi.as_view(), name="api-roles"),
    path("roles/<object_id:role_id>/", api.RoleDetailApi.as_view(), name="api-role"),
    path("role-assignments/", api.RoleAssignmentListCreateApi.as_view(), name="api-role-assignments"),
    path(
        "role-assignments/<object_id:assignment_id>/",
        api.RoleAssignmentRevokeApi.as_view(),
        name="api-role-assignment",
    ),
]
