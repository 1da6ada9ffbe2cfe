from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """The project's user model, swappable from the first migration so roles and profile fields
    can be added later without a painful swap."""
