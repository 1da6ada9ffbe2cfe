from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.models import Group

        from accounts.models import Permission, Role, RoleAssignment, User
        from accounts.selectors import access_cache

        # Whatever changes who holds what makes every cached answer to it stale (subject_access):
        # roles, their permissions, assignments, and the groups users inherit assignments from.
        for model in (Role, RoleAssignment, Permission, Group):
            for signal in (post_save, post_delete):
                signal.connect(access_cache.forget, sender=model, dispatch_uid=f"accounts.access.{model.__name__}")
        for through in (Role.permissions.through, User.groups.through):
            m2m_changed.connect(access_cache.forget, sender=through, dispatch_uid=f"accounts.access.{through.__name__}")
