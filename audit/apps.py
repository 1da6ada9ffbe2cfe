from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth import signals as auth_signals
        from django.db.models.signals import post_save
        from oauth2_provider.signals import app_authorized

        from audit import receivers

        # Django auth and admin, and django-oauth-toolkit: the one place their signals are heard.
        auth_signals.user_logged_in.connect(receivers.on_logged_in, dispatch_uid="audit.login")
        auth_signals.user_logged_out.connect(receivers.on_logged_out, dispatch_uid="audit.logout")
        auth_signals.user_login_failed.connect(receivers.on_login_failed, dispatch_uid="audit.login_failed")
        post_save.connect(receivers.on_admin_logentry, sender=LogEntry, dispatch_uid="audit.admin")
        app_authorized.connect(receivers.on_token_issued, dispatch_uid="audit.token")
        user_locked_out.connect(receivers.on_locked_out, dispatch_uid="audit.locked_out")
