"""Errors: people get our pages (templates/400.html, 403, 404, 500) with the strict CSP; programs
(/api/, /oauth/ except the browser endpoints, /.well-known/) get the RFC 6749 §5.2 JSON shape."""

from __future__ import annotations

import pytest
import requests
from django.urls import include, path

from idp.http.policy import endpoint

PAGE_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Page not found", 500: "Something went wrong"}


def _boom(request):
    raise RuntimeError("a bug")


@endpoint(errors="json")
def _boom_api(request):
    raise RuntimeError("a bug")


# This module is also the URLconf of the 500 tests: the real URLs plus one view that fails.
urlpatterns = [path("boom/", _boom), path("api/v1/boom/", _boom_api), path("", include("idp.urls"))]
handler400 = "idp.http.errors.handler400"
handler403 = "idp.http.errors.handler403"
handler404 = "idp.http.errors.handler404"
handler500 = "idp.http.errors.handler500"


def assert_our_page(reply, status: int) -> None:
    assert reply.status_code == status
    assert reply["Content-Type"].startswith("text/html")
    body = reply.content.decode()
    assert f"<h1>{PAGE_TITLES[status]}" in body
    assert "idp/base.css" in body, "rendered from templates/base.html"
    assert "frame-ancestors 'none'" in reply["Content-Security-Policy"]
    for leak in ("Traceback", "RuntimeError", "DisallowedHost", "CSRF"):
        assert leak not in body


def assert_rfc6749_json(reply, status: int, error: str) -> None:
    assert reply.status_code == status
    assert reply["Content-Type"].startswith("application/json")
    body = reply.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description"}


def test_a_missing_page_is_our_404_page(client, db):
    assert_our_page(client.get("/no-such-page/"), 404)


@pytest.mark.parametrize("path", ["/api/v1/no-such/", "/oauth/no-such/", "/.well-known/no-such"])
def test_a_missing_endpoint_is_json(client, db, path):
    assert_rfc6749_json(client.get(path), 404, "not_found")


def test_a_bad_request_is_our_400_page(client, db):
    # A Host outside ALLOWED_HOSTS is a SuspiciousOperation: Django answers it with handler400.
    assert_our_page(client.get("/accounts/login/", HTTP_HOST="evil.example"), 400)


def test_a_bad_request_to_an_endpoint_is_json(client, db):
    assert_rfc6749_json(client.get("/api/v1/users/", HTTP_HOST="evil.example"), 400, "invalid_request")


def test_a_forged_form_post_is_our_403_page(db):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    assert_our_page(browser.post("/accounts/login/", {"username": "x", "password": "y"}), 403)


@pytest.mark.urls(__name__)
def test_a_crash_is_our_500_page(client, db):
    client.raise_request_exception = False
    assert_our_page(client.get("/boom/"), 500)


@pytest.mark.urls(__name__)
def test_a_crash_in_the_api_is_json(client, db):
    client.raise_request_exception = False
    reply = client.get("/api/v1/boom/")
    assert reply.status_code == 500
    # Only the request id, which support finds the logged traceback by (tests/ops/test_logs.py).
    assert reply.json() == {
        "error": "server_error",
        "error_description": f"internal error, request id {reply['X-Request-ID']}",
    }


def test_the_running_server_answers_pages_to_people_and_json_to_programs(live_server):
    page = requests.get(f"{live_server.url}/no-such-page/", timeout=10)
    assert page.status_code == 404 and "<h1>Page not found" in page.text
    endpoint = requests.get(f"{live_server.url}/api/v1/no-such/", timeout=10)
    assert endpoint.status_code == 404 and endpoint.json()["error"] == "not_found"
    token = requests.post(f"{live_server.url}/oauth/token/", data={"grant_type": "password"}, timeout=10)
    assert token.status_code in (400, 401)
    assert set(token.json()) <= {"error", "error_description"} and "error" in token.json()
