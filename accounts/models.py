from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The project's user model, swappable from the first migration so roles and profile fields
    can be added later without a painful swap.

    Profile fields are the OpenID Connect standard claims the provider can release (scopes
    profile, email, address and phone); empty ones are left out of tokens and userinfo.
    """

    email_verified = models.BooleanField(default=False)
    phone_number = models.CharField(max_length=32, blank=True, help_text="E.164, e.g. +14155550100")
    phone_number_verified = models.BooleanField(default=False)
    street_address = models.CharField(max_length=255, blank=True)
    locality = models.CharField("city", max_length=128, blank=True)
    region = models.CharField(max_length=128, blank=True)
    postal_code = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=64, blank=True)
    locale = models.CharField(max_length=35, blank=True, help_text="BCP 47, e.g. en-GB")
    zoneinfo = models.CharField(max_length=64, blank=True, help_text="IANA time zone, e.g. Europe/Paris")
    updated_at = models.DateTimeField(auto_now=True)
