from typing import Any

from oauth2_provider.scopes import SettingsScopes


class RegisteredScopes(SettingsScopes):
    """Least privilege: a client may be granted only the scopes it is registered for, and asking
    for no scope gets exactly those."""

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        known = super().get_available_scopes(application, request, *args, **kwargs)
        if application is None:
            return known
        return [scope for scope in application.scope_list if scope in known]

    def get_default_scopes(self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any) -> list[str]:
        if application is None:
            return []
        return self.get_available_scopes(application, request)
