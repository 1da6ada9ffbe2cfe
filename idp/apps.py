from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class IdpConfig(AppConfig):
    name = "idp"
    verbose_name = "Identity provider"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        from idp import checks

        if settings.PRODUCTION:
            # Production starts only with secrets that are secrets (idp.checks): a web server,
            # a worker and a migration stop alike, naming the variables.
            refused = checks.secrets_check()
            if refused:
                raise ImproperlyConfigured(" ".join(f"[{error.id}] {error.msg}" for error in refused))

        from idp.http import cors
        from idp.models import AccessToken, Application
        from idp.oauth import access_tokens, clients
        from idp.ops import metrics

        check_request_enabled.connect(cors.cors_allow_client_origin, dispatch_uid="idp.http.cors.client_origin")
        # A client's origins or its is_active flag changed: the next CORS request reads them anew.
        post_save.connect(cors.client_origins_forget, sender=Application, dispatch_uid="idp.http.cors.forget_on_save")
        post_delete.connect(
            cors.client_origins_forget, sender=Application, dispatch_uid="idp.http.cors.forget_on_delete"
        )
        # Client authentication reads clients from the shared cache: any change makes every copy stale.
        for signal in (post_save, post_delete):
            signal.connect(clients.client_cache.forget, sender=Application, dispatch_uid="idp.clients.forget")
        # DOT revokes an access token by deleting its row, on many paths: a JWT access token's jti
        # goes on the deny-list then, whichever path it was.
        post_delete.connect(
            access_tokens.access_token_deleted, sender=AccessToken, dispatch_uid="idp.access_tokens.deny_on_delete"
        )
        # Metrics from audit rows and Celery signals, in every process: web, worker and beat.
        metrics.receivers_connect()
