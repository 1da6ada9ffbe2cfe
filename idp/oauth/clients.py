"""The client behind a client_id, for client authentication on every token, introspection and
revocation request: from the shared cache rather than the database.

Any save or delete of any client (services, admin, shell) makes every cached client stale
(idp.apps connects the receivers), so a disabled client, a rotated secret or a changed client_id
takes effect on the next request in every process. See accounts.selectors.MarkedCache.
"""

from __future__ import annotations

from accounts.selectors import MarkedCache
from idp.models import Application

client_cache = MarkedCache("clients", seconds=300)


def client_cached(*, client_id: str) -> Application | None:
    """The Application with this client_id, usable or not; None when there is none."""
    return client_cache.get_or_read(client_id, lambda: _client_read(client_id))


def _client_read(client_id: str) -> Application | None:
    try:
        # Unknown ids are not kept (get_or_read keeps no None): anyone can send any number of them.
        return Application.objects.filter(client_id=client_id).first()
    except ValueError:  # a NUL byte: PostgreSQL cannot even be asked (DOT answers "no client" too)
        return None
