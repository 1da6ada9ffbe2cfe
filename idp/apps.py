from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class IdpConfig(AppConfig):
    name = "idp"
    verbose_name = "Identity provider"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled
        from django.core.exceptions import ImproperlyConfigured

        from idp import checks

        # Production starts only on settings that pass its system checks (idp.checks): a web
        # server, a worker and a migration stop alike, naming the variables.
        refused = checks.startup_refusals()
        if refused:
            raise ImproperlyConfigured(" ".join(f"[{error.id}] {error.msg}" for error in refused))

        from idp.http import cors
        from idp.models import AccessToken, Application
        from idp.oauth import access_tokens, clients, introspection_cache
        from idp.ops import metrics

        check_request_enabled.connect(cors.cors_allow_client_origin, dispatch_uid="idp.http.cors.client_origin")
        # Client authentication reads clients (and CORS their origins) from the shared cache: any
        # change to any client makes every copy stale.
        for signal in (post_save, post_delete):
            signal.connect(clients.client_cache.forget, sender=Application, dispatch_uid="idp.clients.forget")
        # DOT revokes an access token by deleting its row, on many paths: a JWT access token's jti
        # goes on the deny-list then, whichever path it was.
        post_delete.connect(
            access_tokens.access_token_deleted, sender=AccessToken, dispatch_uid="idp.access_tokens.deny_on_delete"
        )
        # Introspection answers kept in the shared cache go with their token's deletion or change,
        # and all of them with any change to a user (idp.oauth.introspection_cache).
        from django.contrib.auth import get_user_model

        from apikeys.models import ApiKey

        m2m_changed.connect(
            introspection_cache.apikey_roles_changed,
            sender=ApiKey.roles.through,
            dispatch_uid="idp.introspection.apikey_roles",
        )
        for signal in (post_save, post_delete):
            signal.connect(
                introspection_cache.token_changed, sender=AccessToken, dispatch_uid="idp.introspection.token"
            )
            signal.connect(introspection_cache.apikey_changed, sender=ApiKey, dispatch_uid="idp.introspection.apikey")
            signal.connect(
                introspection_cache.users_changed, sender=get_user_model(), dispatch_uid="idp.introspection.users"
            )
        # Sign-in events (this page's and the admin's) and the brute-force watch; admin changes.
        from axes.signals import user_locked_out
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth import signals as auth_signals

        from idp import admin
        from idp.oauth import sessions
        from idp.pages import signin

        auth_signals.user_logged_in.connect(signin.on_logged_in, dispatch_uid="idp.signin.logged_in")
        # A session's tokens are revoked first, then its end is recorded.
        auth_signals.user_logged_out.connect(sessions.session_logged_out, dispatch_uid="idp.sessions.logged_out")
        from idp.sessions import services as session_services

        post_save.connect(
            session_services.on_user_saved, sender=get_user_model(), dispatch_uid="idp.sessions.user_deactivated"
        )
        auth_signals.user_logged_out.connect(signin.on_logged_out, dispatch_uid="idp.signin.logged_out")
        auth_signals.user_login_failed.connect(signin.on_login_failed, dispatch_uid="idp.signin.failed")
        user_locked_out.connect(signin.on_locked_out, dispatch_uid="idp.signin.locked_out")
        post_save.connect(admin.on_admin_logentry, sender=LogEntry, dispatch_uid="idp.admin.logentry")
        # Metrics from audit rows and Celery signals, counted in the process they happen in (web or
        # worker: idp.ops.metrics); every publisher, beat too, stamps the publish time for the lag.
        metrics.receivers_connect()
