"""The audit trail in Django admin: staff with the view permission list, filter, search and open
events; nobody adds, changes or deletes one, superusers included; the list costs the same few
queries however many events there are."""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import audit
from audit.models import AuditEvent
from tests.factories import make_staff, signed_in_client

CHANGELIST = reverse("admin:audit_auditevent_changelist")
SYSTEM = audit.Actor.system("tests")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Staff users are made by the dozen; password storage has its own tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


@pytest.fixture
def viewer(db, client):
    user = make_staff(model_permissions=["audit.view_auditevent"])
    signed_in_client(user, client=client)
    return user


@pytest.fixture
def events(db, client, settings) -> dict[str, AuditEvent]:
    """Events differing in action, actor, client and outcome; one recorded by a real request."""
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.1/32"]  # the test client's peer: its X-Request-ID counts
    audit.record(
        audit.Action.APIKEY_REVOKED,
        actor=audit.Actor("user", "41"),
        target=audit.Target("apikey", "k-admin"),
        client_id="client-admin",
        data={"reason": "<script>alert(1)</script>", "nested": {"b": 2, "a": [1, "é"]}},
    )
    audit.record(audit.Action.TOKEN_ISSUED, actor=audit.Actor("client", "client-admin"), client_id="client-admin")
    audit.record(audit.Action.ALERT_BRUTEFORCE, actor=audit.Actor.system("bruteforce-watch"), outcome="alert")
    client.post(
        "/accounts/login/",
        {"username": f"nobody-{secrets.token_hex(4)}", "password": "wrong"},
        headers={"X-Request-ID": "req-admin-search", "User-Agent": "probe/2.0"},
        HTTP_X_FORWARDED_FOR=fresh_address(),  # a fresh one: no brute-force alert
    )
    audit.seal()
    return {
        "revoked": AuditEvent.objects.get(action="apikey.revoked", target_id="k-admin"),
        "issued": AuditEvent.objects.filter(action="token.issued", client_id="client-admin").get(),
        "alert": AuditEvent.objects.filter(action="alert.bruteforce").latest("id"),
        "failed": AuditEvent.objects.get(request_id="req-admin-search"),
    }


def fresh_address() -> str:
    """A documentation IPv6 address no earlier sign-in used: the brute-force watch counts failures
    per address in Redis, across tests."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | secrets.randbits(64)))


def listed(client, query: dict[str, str] | str = "") -> list[int]:
    reply = client.get(f"{CHANGELIST}?{query if isinstance(query, str) else urlencode(query)}")
    assert reply.status_code == 200, reply.content[:300]
    return [event.pk for event in reply.context["cl"].result_list]


def test_staff_with_the_view_permission_see_the_newest_events_first(client, viewer, events):
    reply = client.get(CHANGELIST)

    assert reply.status_code == 200
    shown = [event.pk for event in reply.context["cl"].result_list]
    assert shown == sorted(AuditEvent.objects.values_list("pk", flat=True), reverse=True)[: len(shown)]
    page = reply.content.decode()
    assert "req-admin-search" in page and "user:41" in page and "apikey:k-admin" in page


def test_staff_without_the_view_permission_are_refused(client, events):
    signed_in_client(make_staff(), client=client)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(reverse("admin:audit_auditevent_change", args=[events["revoked"].pk])).status_code == 403


@pytest.mark.parametrize(
    ("query", "selects"),
    [
        ({"action": "apikey.revoked"}, lambda e: e.action == "apikey.revoked"),
        ({"actor_type": "client"}, lambda e: e.actor_type == "client"),
        ({"client_id": "client-admin"}, lambda e: e.client_id == "client-admin"),
        ({"outcome": "alert"}, lambda e: e.outcome == "alert"),
        (
            {"outcome": "failure", "actor_type": "anonymous"},
            lambda e: (e.outcome, e.actor_type) == ("failure", "anonymous"),
        ),
    ],
    ids=["action", "actor_type", "client_id", "outcome", "outcome_and_actor_type"],
)
def test_each_filter_narrows_the_list(client, viewer, events, query, selects):
    expected = sorted((event.pk for event in AuditEvent.objects.all() if selects(event)), reverse=True)

    assert listed(client, {**query, "all": ""}) == expected
    assert len(expected) < AuditEvent.objects.count()


def test_the_date_filter_selects_by_day(client, viewer, events):
    # The bounds as the sidebar's "Today" link writes them: aware midnights.
    today = timezone.localtime(events["failed"].created_at).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    todays = sorted(
        (event.pk for event in AuditEvent.objects.all() if today <= event.created_at < tomorrow), reverse=True
    )

    assert events["failed"].pk in todays
    assert listed(client, {"created_at__gte": str(today), "created_at__lt": str(tomorrow), "all": ""}) == todays
    assert listed(client, {"created_at__gte": str(tomorrow)}) == []
    assert "created_at__gte=" in client.get(CHANGELIST).content.decode(), "the sidebar offers the date ranges"


def test_the_sidebar_offers_every_action_and_the_clients_seen(client, viewer, events):
    page = client.get(CHANGELIST).content.decode()
    assert all(f"?action={action.value}" in page for action in audit.Action)
    assert "?client_id=client-admin" in page
    assert "?client_id=&amp;" not in page, "no empty client choice"
    assert "?outcome=alert" in page and "?actor_type=apikey" in page


@pytest.mark.parametrize(
    ("term", "event"),
    [
        ("req-admin-search", "failed"),
        ("  req-admin-search ", "failed"),
        ("k-admin", "revoked"),
        ("41", "revoked"),
        ("alert.bruteforce", "alert"),
    ],
)
def test_search_finds_events_by_an_exact_identifier(client, viewer, events, term, event):
    found = listed(client, {"q": term})
    assert events[event].pk in found
    assert len(found) < AuditEvent.objects.count()


def test_search_for_a_client_id_finds_its_events(client, viewer, events):
    assert set(listed(client, {"q": "client-admin"})) == {events["revoked"].pk, events["issued"].pk}


# Every other hostile-input test is listed in tests/hostile.py.
@pytest.mark.parametrize(
    "query",
    [
        {"q": "req-admin"},  # a part of an identifier is not an identifier
        {"q": "' OR '1'='1' --"},
        {"q": "<script>alert(1)</script>"},
        {"q": "x" * 4000},
        {"action": "no.such.action"},
        {"client_id": "' OR 1=1 --"},
    ],
    ids=["partial", "sql", "html", "long", "unknown_action", "sql_client"],
)
def test_hostile_searches_and_filters_find_nothing_and_break_nothing(client, viewer, events, query):
    before = AuditEvent.objects.count()
    assert listed(client, query) == []
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"q": "a\x00b"}, 400),  # idp.http.middleware.ParameterGuardMiddleware, before the admin
        ({"outcome": "\x00"}, 400),
        ({"q": "x" * 5000}, 400),
        ({"created_at__gte": "not-a-date"}, 302),  # the admin's own answer to a bad filter: ?e=1
    ],
    ids=["nul_search", "nul_filter", "oversized_search", "bad_date"],
)
def test_malformed_list_parameters_are_refused_without_a_server_error(client, viewer, events, query, status):
    reply = client.get(f"{CHANGELIST}?{urlencode(query)}")
    assert reply.status_code == status
    if status == 302:
        assert reply["Location"].endswith("?e=1")


def test_an_event_opens_read_only_with_every_field_and_its_data_as_escaped_json(client, viewer, events):
    event = events["revoked"]

    reply = client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert reply.status_code == 200
    page = reply.content.decode()
    assert event.hash is not None
    for value in (event.hash, "k-admin", "client-admin", "apikey.revoked", "user", "41"):
        assert value in page
    assert "<pre>{\n  &quot;nested&quot;: {\n    &quot;a&quot;: [\n      1,\n      &quot;é&quot;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert 'name="_save"' not in page, "no save button"
    failed = client.get(reverse("admin:audit_auditevent_change", args=[events["failed"].pk])).content.decode()
    assert "probe/2.0" in failed and "req-admin-search" in failed


@pytest.fixture(params=["viewer", "superuser"])
def operator(request, db, client):
    every = ["audit.view_auditevent", "audit.add_auditevent", "audit.change_auditevent", "audit.delete_auditevent"]
    user = make_staff(superuser=True) if request.param == "superuser" else make_staff(model_permissions=every)
    signed_in_client(user, client=client)
    return user


def test_nobody_adds_changes_or_deletes_an_event(client, operator, events):
    event = events["revoked"]
    before = list(AuditEvent.objects.order_by("id").values_list("id", "action", "data", "hash"))
    change = reverse("admin:audit_auditevent_change", args=[event.pk])
    delete = reverse("admin:audit_auditevent_delete", args=[event.pk])
    form = {"action": "forged", "actor_type": "system", "actor_id": "x", "outcome": "success", "hash": "0" * 64}

    answers = {
        "add page": client.get(reverse("admin:audit_auditevent_add")).status_code,
        "add": client.post(reverse("admin:audit_auditevent_add"), form).status_code,
        "change": client.post(change, form).status_code,
        "delete page": client.get(delete).status_code,
        "delete": client.post(delete, {"post": "yes"}).status_code,
        "bulk delete": client.post(
            CHANGELIST, {"action": "delete_selected", "_selected_action": [event.pk]}
        ).status_code,
    }

    assert answers == {
        "add page": 403,
        "add": 403,
        "change": 403,
        "delete page": 403,
        "delete": 403,
        "bulk delete": 200,  # there are no bulk actions: the list again, unchanged
    }
    assert list(AuditEvent.objects.order_by("id").values_list("id", "action", "data", "hash")) == before
    assert not AuditEvent.objects.filter(action="admin.changed").exists()
    page = client.get(CHANGELIST).content.decode()
    assert 'name="action"' not in page, "no bulk actions"
    assert reverse("admin:audit_auditevent_add") not in page


def _queries(client, query: str = "") -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(f"{CHANGELIST}{query}").status_code == 200
    return [entry["sql"] for entry in captured.captured_queries]


def test_the_list_costs_the_same_queries_for_few_and_many_events(client, viewer, events):
    few = _queries(client)
    for index in range(60):
        audit.record(audit.Action.ROLE_CREATED, actor=audit.Actor("user", str(index)), client_id=f"c{index % 3}")
    many = _queries(client)

    assert len(many) == len(few), "\n".join(many)
    # show_full_result_count=False: the unfiltered total is not counted a second time.
    filtered = _queries(client, "?outcome=success")
    assert sum("COUNT(" in sql.upper() for sql in filtered) == 1
    assert len(filtered) <= len(few) + 1
