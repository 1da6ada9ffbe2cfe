"""Django admin's app, on our admin site (idp.admin_site): INSTALLED_APPS names this instead of
django.contrib.admin."""

from django.contrib.admin.apps import AdminConfig


class IdpAdminConfig(AdminConfig):
    default_site = "idp.admin_site.IdpAdminSite"
