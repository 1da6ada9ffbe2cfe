"""Retiring endpoints: Deprecation (RFC 9745), Sunset (RFC 8594) and Link headers on every response
of a deprecated view, errors included; the six-month policy; and no /api/v1 endpoint deprecated yet."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, get_resolver

from idp.deprecation import deprecated, deprecation_of
from tests.security.deprecation_urls import LINK

DEPRECATION = "@1767225600"  # 2026-01-01T00:00:00Z
SUNSET = "Wed, 01 Jul 2026 00:00:00 GMT"
LINKS = f'<{LINK}>; rel="deprecation"; type="text/html", <{LINK}>; rel="sunset"'


@pytest.fixture
def urls(settings):
    settings.ROOT_URLCONF = "tests.security.deprecation_urls"


def assert_deprecated(response, *, link=True):
    assert response["Deprecation"] == DEPRECATION
    assert response["Sunset"] == SUNSET
    if link:
        assert response["Link"] == LINKS
    else:
        assert not response.has_header("Link")


@pytest.mark.parametrize(
    ("method", "path", "data", "status"),
    [
        ("get", "/api/v1/greeting/", None, 200),
        ("get", "/api/v1/greeting/?missing=1", None, 404),
        ("get", "/api/v1/greeting/?boom=1", None, 500),
        ("head", "/api/v1/greeting/", None, 200),
        ("get", "/api/v1/greeting-api/", None, 200),
        ("get", "/api/v1/greeting-api/?missing=1", None, 404),
        ("post", "/api/v1/greeting-api/", {"name": "x" * 21}, 400),
        ("post", "/api/v1/greeting-api/", {"name": "bob"}, 200),
        ("delete", "/api/v1/greeting-api/", None, 405),
        ("get", "/api/v1/greeting-wrapped/", None, 200),
        ("post", "/api/v1/greeting-wrapped/", {}, 400),
    ],
)
def test_every_response_of_a_deprecated_view_carries_the_headers(urls, db, method, path, data, status):
    from django.test import Client

    client = Client(raise_request_exception=False)
    response = getattr(client, method)(path, data=data, content_type="application/json")
    assert response.status_code == status
    assert_deprecated(response)
    if status >= 400:
        assert response.json()["error"]  # still the one error shape


def test_a_refused_caller_is_told_too_and_the_link_is_optional(urls, db, client):
    response = client.get("/api/v1/private/")
    assert response.status_code == 401
    assert response.has_header("WWW-Authenticate")
    assert_deprecated(response, link=False)


def test_the_replacement_alongside_is_not_deprecated(urls, db, client):
    response = client.get("/api/v2/greeting-api/")
    assert response.status_code == 200
    assert not {"Deprecation", "Sunset", "Link"} & set(response.headers)


def test_an_existing_link_header_is_kept(urls, db, client):
    view = deprecated(since=date(2026, 1, 1), sunset=date(2026, 7, 1), link=LINK)(_paged)
    response = view(_request())
    assert response["Link"] == f'</api/v1/greeting/?page=2>; rel="next", {LINKS}'


def _paged(request):
    from django.http import JsonResponse

    response = JsonResponse({})
    response["Link"] = '</api/v1/greeting/?page=2>; rel="next"'
    return response


def _request():
    from django.test import RequestFactory

    return RequestFactory().get("/api/v1/greeting/")


def test_an_aware_datetime_in_any_zone_is_sent_in_utc():
    moment = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    view = deprecated(since=moment, sunset=date(2026, 7, 1))(_paged)
    assert deprecation_of(view).since == datetime(2026, 1, 1, tzinfo=UTC)
    assert view(_request())["Deprecation"] == DEPRECATION


@pytest.mark.parametrize(
    ("since", "sunset", "reason"),
    [
        (date(2026, 1, 1), date(2026, 6, 30), "at least 6 months"),  # one day short of the policy
        (date(2026, 8, 31), date(2027, 2, 27), "at least 6 months"),  # 31 Aug + 6 months is 28 Feb
        (date(2026, 1, 1), date(2025, 1, 1), "at least 6 months"),
        (datetime(2026, 1, 1), date(2026, 7, 1), "aware datetime"),  # naive on purpose
    ],
)
def test_a_sunset_sooner_than_the_policy_or_a_naive_time_is_refused(since, sunset, reason):
    with pytest.raises(ImproperlyConfigured, match=reason):
        deprecated(since=since, sunset=sunset)


def test_six_months_to_the_day_is_enough():
    assert deprecated(since=date(2026, 8, 31), sunset=date(2027, 2, 28))


def _routes(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback


def api_v1_routes():
    routes = [(route, callback) for route, callback in _routes(get_resolver("idp.urls")) if route.startswith("api/v1/")]
    assert len(routes) >= 10  # the walk found the API, so the checks below check something
    return routes


def test_no_api_v1_endpoint_is_deprecated_yet():
    assert [route for route, callback in api_v1_routes() if deprecation_of(callback)] == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_no_api_v1_response_carries_deprecation_headers(db, client, method):
    for route, _ in api_v1_routes():
        path = "/" + re.sub(r"<[^>]+>", "1", route)  # both converters (object_id, client_id) take "1"
        response = getattr(client, method)(path, content_type="application/json")
        assert response.status_code < 500, path
        assert not {"Deprecation", "Sunset"} & set(response.headers), path
