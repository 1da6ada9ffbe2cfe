from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """An API key, stored only as a keyed hash of its secret plus a public identifier for lookup.
    Issuing, verifying and rotating keys arrives with the API keys issue."""

    public_id = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=128, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    scope = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"
