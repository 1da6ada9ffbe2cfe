"""Per-client protocol policy that DOT asks for by callable. Imported by settings, so models are
loaded inside the function, never at import time."""


def pkce_required(client_id: str) -> bool:
    """PKCE is required of public clients and of confidential clients registered with require_pkce.

    Confidential clients may omit it otherwise (the OpenID certification plans send none); a code
    issued with a challenge still needs its verifier, which oauthlib enforces on redemption.
    """
    from idp.models import Application

    row = Application.objects.filter(client_id=client_id).values_list("client_type", "require_pkce").first()
    if row is None:
        return True
    client_type, require_pkce = row
    return client_type == Application.CLIENT_PUBLIC or require_pkce
