import secrets

from oauth2_provider.generators import BaseHashGenerator


class ClientSecretGenerator(BaseHashGenerator):
    """256 bits from the operating system's CSPRNG, URL-safe (43 characters)."""

    def hash(self) -> str:
        return secrets.token_urlsafe(32)
