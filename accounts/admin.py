"""Admin for users, groups, permissions and roles.

Every RBAC write made here goes through accounts.services, so it is audited exactly like the API
and the commands: permissions are created with permission_ensure; roles with role_create, changed
with role_update, deleted with role_delete; assignments are never edited in place, only granted
(role_grant: an inline row added) or revoked (role_revoke: a row deleted, or its group deleted).

The person at the admin is the services' caller (accounts.selectors.caller_for_person): staff who
are not superusers grant, reshape and revoke only what their own roles hold, never their own
roles, and can make nobody (themselves included) staff, superuser or a member of a group; being
staff gives nothing by itself. They change (their password included) or delete only users who are
not staff and hold nothing they do not, and delete only permissions they hold; nobody deletes a
management permission. No change may leave nobody holding the management permissions.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

import audit
from accounts.models import MANAGEMENT_PERMISSIONS, MFA_RESET, Permission, Role, RoleAssignment, User
from accounts.selectors import (
    Access,
    Caller,
    Holdings,
    caller_for_person,
    caller_holds,
    holdings_of,
    subject_access,
)
from accounts.services import (
    administration_kept,
    email_verification_enqueue,
    permission_ensure,
    role_create,
    role_delete,
    role_grant,
    role_revoke,
    role_update,
)


def admin_caller(request: HttpRequest) -> Caller:
    """The person using the admin, as the services' caller."""
    return caller_for_person(user=cast(User, request.user))  # the admin admits only signed-in staff


def save_role_assignments(request: HttpRequest, formset: BaseInlineFormSet) -> None:
    """Apply a RoleAssignment inline formset through the audited services: new rows are grants,
    deleted rows revocations. Rows are never changed in place (the inlines refuse it)."""
    caller = admin_caller(request)
    formset.save(commit=False)
    for assignment in formset.deleted_objects:
        role_revoke(assignment=assignment, actor=caller.actor, caller=caller)
    for assignment in formset.new_objects:
        role_grant(role=assignment.role, actor=caller.actor, caller=caller, **{formset.fk.name: formset.instance})


class RoleAssignmentInline(admin.TabularInline):
    """The roles a user, group or client holds. Add a row to grant, tick delete to revoke."""

    model = RoleAssignment
    fields = ["role", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0
    verbose_name = "role assignment"
    verbose_name_plural = "role assignments (add a row to grant a role, delete one to revoke it)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoleAssignment]:
        return super().get_queryset(request).select_related("role__application")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # existing rows are read-only: a different role is a revocation plus a grant


class UserRoleAssignmentInline(RoleAssignmentInline):
    fk_name = "user"


class GroupRoleAssignmentInline(RoleAssignmentInline):
    fk_name = "group"


class AuditedRoleAssignmentsMixin:
    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is RoleAssignment:
            save_role_assignments(request, formset)
        else:
            # A mixin: super() is the ModelAdmin it is mixed into, which mypy cannot see from here.
            super().save_formset(request, form, formset, change)  # type: ignore[misc]


# --- Users and groups ----------------------------------------------------------------------------


@admin.register(User)
class UserAdmin(AuditedRoleAssignmentsMixin, DjangoUserAdmin):
    fieldsets = (
        # Django's UserAdmin sets fieldsets; the stubs type the attribute as ModelAdmin's, None allowed.
        *DjangoUserAdmin.fieldsets,  # type: ignore[misc]
        (
            "OpenID Connect profile",
            {
                "description": "Released to clients as standard claims (scopes email, phone, address, profile).",
                "fields": (
                    "email_verified",
                    ("phone_number", "phone_number_verified"),
                    "street_address",
                    ("postal_code", "locality"),
                    ("region", "country"),
                    ("locale", "zoneinfo"),
                    "updated_at",
                ),
            },
        ),
        (
            "Effective access",
            {
                "description": "Direct and group roles, across every client (read-only; edit the role "
                "assignments below or the groups above).",
                "fields": ("effective_roles", "effective_permissions"),
            },
        ),
    )
    readonly_fields = ("updated_at", "effective_roles", "effective_permissions")
    inlines = [UserRoleAssignmentInline]
    # Resetting someone's second factors is idp's (idp.mfa), which accounts does not import: idp.admin
    # adds it to the site as a disabled site-wide action, and naming it here enables it on this page
    # only (Django's documented way). Offered only to who holds idp.mfa.reset (has_mfa_reset_permission).
    actions = ["reset_second_factors"]
    # What makes someone more than they are: only a superuser sets these.
    PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return fields
        return (*fields, *self.PRIVILEGE_FIELDS)

    # Changing someone (their password above all: Django's password view asks has_change_permission)
    # or deleting them acts as them, or takes away what they hold. Staff who are not superusers do
    # it only to people who are not staff and hold nothing the staff member does not, as the
    # management API's user_deactivate requires.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_act_on(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_act_on(request, obj)

    @staticmethod
    def _may_act_on(request: HttpRequest, user: User | None) -> bool:
        if user is None or request.user.is_superuser:
            return True
        if user.is_staff or user.is_superuser:
            return False
        return caller_holds(caller=admin_caller(request), carries=holdings_of(user_id=user.pk))

    def has_mfa_reset_permission(self, request: HttpRequest) -> bool:
        """Whether the person at the admin holds idp.mfa.reset (through a global role; a superuser
        holds everything): the permission the management API asks for the same reset."""
        return admin_caller(request).holds([MFA_RESET])

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        # email_verified set here is an operator's decision, recorded with who made it; a new
        # address without it is unverified, and is mailed its link (accounts.services).
        changed = set(getattr(form, "changed_data", ()))
        verified_here = obj.email_verified and "email_verified" in changed
        new_address = change and "email" in changed
        if new_address and not verified_here:
            obj.email_verified = False
        # Deactivating someone (the is_active box) must not leave nobody able to administer.
        with administration_kept(admin_caller(request)):
            super().save_model(request, obj, form, change)
        if verified_here:
            audit.record(
                audit.Action.EMAIL_VERIFIED,
                actor=admin_caller(request).actor,
                target=audit.Target.user(obj),
                data={"via": "operator"},
            )
        elif new_address and obj.email:
            email_verification_enqueue(user_id=obj.pk)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        with administration_kept(admin_caller(request)):  # a superuser taking groups away
            super().save_related(request, form, formsets, change)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        with administration_kept(admin_caller(request)):
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        if not all(self._may_act_on(request, user) for user in queryset):
            raise PermissionDenied("cannot delete a user who is staff or holds what you do not")
        with administration_kept(admin_caller(request)):
            super().delete_queryset(request, queryset)

    @staticmethod
    def _access(user: User) -> Access:
        # Memoised on the instance for the page's two columns; User declares no such attribute.
        if not hasattr(user, "_admin_access"):
            user._admin_access = subject_access(user_id=user.pk, all_clients=True)  # type: ignore[attr-defined]
        return user._admin_access  # type: ignore[attr-defined]

    @admin.display(description="roles")
    def effective_roles(self, user: User) -> str:
        return _bullets(self._access(user).roles, empty="No roles.")

    @admin.display(description="permissions")
    def effective_permissions(self, user: User) -> str:
        return _bullets(self._access(user).permissions, empty="No permissions.")


def _bullets(items: list[str], *, empty: str) -> str:
    if not items:
        return empty
    return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((item,) for item in items)))


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedRoleAssignmentsMixin, DjangoGroupAdmin):
    inlines = [GroupRoleAssignmentInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A group's Django permissions are admin powers for its members: only a superuser sets them.
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else (*fields, "permissions")

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        self.delete_queryset(request, Group.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        # The members lose the group's roles: each of those is an audited revocation.
        with administration_kept(admin_caller(request)):
            _revoke_all(request, RoleAssignment.objects.filter(group__in=queryset))
            queryset.delete()


def _revoke_all(request: HttpRequest, assignments: QuerySet[RoleAssignment]) -> None:
    caller = admin_caller(request)
    for assignment in assignments.select_related("role__application", "user", "group", "client"):
        role_revoke(assignment=assignment, actor=caller.actor, caller=caller)


# --- Permissions and roles -----------------------------------------------------------------------


@admin.register(Permission)
class PermissionAdmin(admin.ModelAdmin):
    list_display = ["codename", "description", "used_by"]
    search_fields = ["codename", "description"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Permission]:
        roles = Role.objects.select_related("application")
        return super().get_queryset(request).prefetch_related(Prefetch("roles", queryset=roles))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Code and tokens refer to the codename: renaming it would silently change their meaning.
        return ["codename", "used_by"] if obj else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("codename", "description", "used_by") if obj else ("codename", "description")

    @admin.display(description="roles using it")
    def used_by(self, permission: Permission) -> str:
        return ", ".join(str(role) for role in permission.roles.all()) or "-"

    def save_model(self, request: HttpRequest, obj: Permission, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = permission_ensure(
            codename=obj.codename, description=obj.description, actor=audit.Actor.user(request.user)
        )
        obj.pk = created.pk
        obj._state.adding = False

    # Deleting a permission takes it from every role holding it. A management permission never goes
    # (idp-admin would lose it, and with it the provider its administrator; the code needs it
    # anyway); any other only by who holds it, as for changing a role holding it.
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or self._may_delete(request, obj))

    @staticmethod
    def _may_delete(request: HttpRequest, permission: Permission) -> bool:
        if permission.codename in MANAGEMENT_PERMISSIONS:
            return False
        held = Holdings(permissions=frozenset({permission.codename}))
        return caller_holds(caller=admin_caller(request), carries=held)

    def delete_model(self, request: HttpRequest, obj: Permission) -> None:
        self.delete_queryset(request, Permission.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Permission]) -> None:
        if not all(self._may_delete(request, permission) for permission in queryset):
            raise PermissionDenied("cannot delete a management permission, or one you do not hold")
        with administration_kept(admin_caller(request)):
            queryset.delete()


class RoleKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("global", "Global"), ("client", "A client's own")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        field = "application" if queryset.model is Role else "role__application"
        if self.value() == "global":
            return queryset.filter(**{f"{field}__isnull": True})
        if self.value() == "client":
            return queryset.filter(**{f"{field}__isnull": False})
        return queryset


class RoleForm(forms.ModelForm):
    class Meta:
        model = Role
        fields = ["name", "description", "application", "permissions", "require_mfa"]
        labels = {"application": "client"}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # a ModelForm's clean() returns its cleaned_data
        # The model's conditional unique constraint would only say it "is violated".
        application = data.get("application") if "application" in self.fields else self.instance.application
        name = data.get("name")
        if name and application is None:
            if Role.objects.filter(name=name, application__isnull=True).exclude(pk=self.instance.pk).exists():
                self.add_error("name", "A global role with this name already exists.")
        return data


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    form = RoleForm
    list_display = ["name", "client", "permission_count", "require_mfa", "description"]
    list_filter = [RoleKindFilter, ("application", admin.RelatedOnlyFieldListFilter), "require_mfa"]
    search_fields = ["name", "description", "application__name", "application__client_id"]
    filter_horizontal = ["permissions"]
    autocomplete_fields = ["application"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return (
            super()
            .get_queryset(request)
            .select_related("application")
            .annotate(permission_count=Count("permissions", distinct=True))
        )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = ("name", "description", "application", "permissions", "require_mfa")
        return (*fields, "holders") if obj else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Tokens carry the name, and moving a role between clients (or making it global) would
        # silently change which tokens carry it: either is a new role.
        return ["name", "application", "holders"] if obj else []

    @admin.display(description="client", ordering="application__name")
    def client(self, role: Role) -> str:
        return str(role.application) if role.application_id else "(global)"

    @admin.display(description="permissions", ordering="permission_count")
    def permission_count(self, role: Role) -> int:
        return role.permission_count  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="held by")
    def holders(self, role: Role) -> str:
        count = role.assignments.count()
        url = reverse("admin:accounts_roleassignment_changelist") + f"?role__id__exact={role.pk}"
        return format_html('<a href="{}">{} assignment{}</a>', url, count, "" if count == 1 else "s")

    def save_model(self, request: HttpRequest, obj: Role, form: Any, change: bool) -> None:
        caller = admin_caller(request)
        permissions = [permission.codename for permission in form.cleaned_data["permissions"]]
        if change:
            role_update(
                role_id=obj.pk,
                description=obj.description,
                permissions=permissions,
                require_mfa=obj.require_mfa,
                actor=caller.actor,
                caller=caller,
            )
        else:
            created = role_create(
                name=obj.name,
                description=obj.description,
                application=obj.application,
                permissions=permissions,
                require_mfa=obj.require_mfa,
                actor=caller.actor,
                caller=caller,
            )
            obj.pk = created.pk
            obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # the permissions were set by role_create / role_update, audited; there are no inlines

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        # role_delete revokes from every holder first: one audited revocation each.
        caller = admin_caller(request)
        role_delete(role_id=obj.pk, actor=caller.actor, caller=caller)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Role]) -> None:
        for role in queryset:
            self.delete_model(request, role)


# --- Role assignments ----------------------------------------------------------------------------


class HolderKindFilter(admin.SimpleListFilter):
    title = "holder kind"
    parameter_name = "holder"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("user", "User"), ("group", "Group"), ("client", "Client (service account)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in {"user", "group", "client"}:
            return queryset.filter(**{f"{self.value()}__isnull": False})
        return queryset


class RoleAssignmentForm(forms.ModelForm):
    class Meta:
        model = RoleAssignment
        fields = ["role", "user", "group", "client"]
        help_texts = {"user": "Exactly one of user, group and client."}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None  # a ModelForm's clean() returns its cleaned_data
        holders = [name for name in ("user", "group", "client") if data.get(name)]
        if len(holders) != 1:
            raise forms.ValidationError("Choose exactly one holder: a user, a group or a client.")
        client, role = data.get("client"), data.get("role")
        if client is not None and role is not None:
            if client.authorization_grant_type != client.GRANT_CLIENT_CREDENTIALS:
                raise forms.ValidationError(
                    {"client": "Only a client_credentials client has a service account to hold roles."}
                )
            if role.application_id not in (None, client.pk):
                raise forms.ValidationError(
                    {"role": "A service account sees only global roles and its own client's roles."}
                )
        return data


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    form = RoleAssignmentForm
    list_display = ["role", "role_client", "holder_kind", "holder_name", "created_at"]
    list_filter = [HolderKindFilter, RoleKindFilter, ("role", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["role__name", "user__username", "user__email", "group__name", "client__name", "client__client_id"]
    autocomplete_fields = ["role", "user", "group", "client"]
    date_hierarchy = "created_at"
    list_select_related = ["role__application", "user", "group", "client"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = ("role", "user", "group", "client")
        return (*fields, "created_at") if obj else fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # granted or revoked, never edited: the change page is a read-only view

    @admin.display(description="role's client", ordering="role__application__name")
    def role_client(self, assignment: RoleAssignment) -> str:
        return str(assignment.role.application) if assignment.role.application_id else "(global)"

    @admin.display(description="holder kind")
    def holder_kind(self, assignment: RoleAssignment) -> str:
        return "user" if assignment.user_id else "group" if assignment.group_id else "client"

    @admin.display(description="holder")
    def holder_name(self, assignment: RoleAssignment) -> str:
        return str(assignment.holder)

    def save_model(self, request: HttpRequest, obj: RoleAssignment, form: Any, change: bool) -> None:
        caller = admin_caller(request)
        created = role_grant(
            role=obj.role, user=obj.user, group=obj.group, client=obj.client, actor=caller.actor, caller=caller
        )
        obj.pk = created.pk
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: RoleAssignment) -> None:
        caller = admin_caller(request)
        role_revoke(assignment=obj, actor=caller.actor, caller=caller)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RoleAssignment]) -> None:
        _revoke_all(request, queryset)
