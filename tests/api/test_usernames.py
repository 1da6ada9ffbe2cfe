"""One person, one name: usernames are unique ignoring case and Unicode compatibility forms, a name
mixing scripts to look like another is refused, and so is one that is another's look-alike, in its
own script or another; e-mail addresses are unique ignoring case, even when two requests race.
Through the management API, the service (which the admin and the commands call) and the database
itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.signals import pre_save

import audit
from accounts.models import User
from accounts.services import user_create
from tests.api.conftest import error_of

SYSTEM = audit.Actor.system("tests")
PASSWORD = "a long enough passphrase 42"


@pytest.fixture
def existing(db):
    return user_create(username="alice", email="alice@example.com", password=PASSWORD, actor=SYSTEM)


@pytest.mark.parametrize(
    ("username", "why"),
    [
        ("Alice", "case"),
        ("ALICE", "case"),
        ("\u0430lice", "a Cyrillic a beside Latin letters"),
        ("\uff41lice", "fullwidth a, the same after NFKC"),
        ("\u0430\u04c0\u0456\u0441\u0435", "all Cyrillic (a palochka for the l), looks like alice"),
        ("aIice", "a capital I for the l"),
        ("a1ice", "a digit one for the l"),
        ("\u0251lice", "a Latin alpha for the a"),
        ("al\u0131ce", "a dotless i"),
    ],
)
def test_a_look_alike_of_an_existing_username_is_refused_by_the_api(admin, existing, username, why):
    before = User.objects.count()
    reply = admin.api().post("/users/", {"username": username, "email": "x@example.com", "password": PASSWORD})
    assert reply.status_code == 400, (why, reply.text)
    assert error_of(reply) == "invalid_request"
    assert User.objects.count() == before


@pytest.mark.parametrize("email", ["alice@example.com", "ALICE@Example.com"])
def test_an_email_address_is_unique_ignoring_case(admin, existing, email):
    reply = admin.api().post("/users/", {"username": "alice2", "email": email, "password": PASSWORD})
    assert reply.status_code == 400, reply.text
    assert not User.objects.filter(username="alice2").exists()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("all", "AII"),
        ("all", "A11"),
        ("bob", "B0B"),
        ("alice", "ALICE"),
        ("alice", "\u0251l\u0131ce"),
    ],
)
def test_names_that_look_alike_in_any_case_are_one_name(db, first, second):
    user_create(username=first, email="", password=PASSWORD, actor=SYSTEM)
    with pytest.raises(ValidationError) as refused:
        user_create(username=second, email="", password=PASSWORD, actor=SYSTEM)
    assert "username" in refused.value.message_dict
    assert User.objects.count() == 1


def test_names_that_differ_visibly_stay_distinct(db):
    for username in ("all", "ali", "alice", "alicia", "m", "\u0430\u043b\u0438\u0441\u0430"):
        user_create(username=username, email="", password=PASSWORD, actor=SYSTEM)
    assert User.objects.count() == 6


@contextmanager
def written_meanwhile(*, when_saving: str, **twin: str) -> Iterator[None]:
    """Another request's user, written after user_create's checks and before its INSERT, as two
    concurrent requests race: created when the named user is about to be saved."""

    def write(sender: type[User], instance: User, **kwargs: object) -> None:
        if instance.username == when_saving and instance.pk is None:
            User.objects.create(**twin)

    pre_save.connect(write, sender=User, dispatch_uid="written_meanwhile")
    try:
        yield
    finally:
        pre_save.disconnect(sender=User, dispatch_uid="written_meanwhile")


RACES = [
    ("username", {"username": "Carol", "email": "other@example.com"}),
    ("email", {"username": "someone", "email": "CAROL@example.com"}),
]


@pytest.mark.parametrize(("field", "twin"), RACES)
def test_a_twin_written_concurrently_is_a_validation_error_of_its_field(db, field, twin):
    with written_meanwhile(when_saving="carol", **twin), pytest.raises(ValidationError) as refused:
        user_create(username="carol", email="carol@example.com", password=PASSWORD, actor=SYSTEM)
    assert list(refused.value.message_dict) == [field]


@pytest.mark.parametrize(("field", "twin"), RACES)
def test_a_twin_written_concurrently_is_a_400_from_the_api(admin, field, twin):
    with written_meanwhile(when_saving="carol", **twin):
        reply = admin.api().post("/users/", {"username": "carol", "email": "carol@example.com", "password": PASSWORD})
    assert reply.status_code == 400, reply.text
    assert error_of(reply) == "invalid_request"
    assert not User.objects.filter(username="carol").exists()


def test_a_mixed_script_name_is_refused_even_without_a_twin(db):
    with pytest.raises(ValidationError):
        user_create(username="p\u0430ypal", email="p@example.com", password=PASSWORD, actor=SYSTEM)


def test_names_in_one_other_script_are_welcome(db):
    user_create(username="\u0430\u043b\u0438\u0441\u0430", email="alisa@example.com", password=PASSWORD, actor=SYSTEM)
    user_create(username="j\u00fcrgen", email="jurgen@example.com", password=PASSWORD, actor=SYSTEM)
    assert User.objects.count() == 2


def test_the_database_refuses_a_twin_written_past_the_service(existing):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="ALICE", email="other@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="carol", email="Alice@Example.COM")


def test_users_without_an_email_do_not_collide(db):
    user_create(username="nomail1", email="", password=PASSWORD, actor=SYSTEM)
    user_create(username="nomail2", email="", password=PASSWORD, actor=SYSTEM)
