"""Minimal valid objects with unique random values, made through the services so that audit rows
and hashing are real."""

from __future__ import annotations

import secrets

import factory

import audit

USER_PASSWORD = "correct horse battery staple"  # a test-only password; tests sign in with it


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "accounts.User"

    username = factory.Sequence(lambda n: f"user{n}-{secrets.token_hex(3)}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")


def make_user(**fields):
    from accounts.services import user_create

    data = factory.build(dict, FACTORY_CLASS=UserFactory)
    data.update(fields)
    first_name = data.pop("first_name", "")
    last_name = data.pop("last_name", "")
    user = user_create(
        username=data["username"], email=data["email"], password=USER_PASSWORD, actor=audit.Actor.system("tests")
    )
    if first_name or last_name:
        user.first_name, user.last_name = first_name, last_name
        user.save(update_fields=["first_name", "last_name"])
    return user


def make_client(**overrides):
    """Register a client through the service; returns IssuedClient (with the raw secret)."""
    from accounts.selectors import Caller
    from idp.oauth import clients

    options = {
        "name": f"Client {secrets.token_hex(4)}",
        "client_type": "confidential",
        "grant": "authorization_code",
        "redirect_uris": ["http://127.0.0.1:9999/callback"],
        "scopes": ["openid", "profile", "email", "offline_access"],
        "caller": Caller.operator(audit.Actor.system("tests")),
    }
    options.update(overrides)
    return clients.client_create(**options)
