"""The benchmark's pieces inside the app (`make bench`, docs/performance.md), without any load: the
floor views stay unrouted unless the benchmark asks for them, and what `bench_seed` stores works
exactly like the credentials the app issues itself, so the benchmark measures real requests."""

from __future__ import annotations

import base64
import io
import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.core.management import call_command
from django.test import RequestFactory

TOKEN = "/oauth/token/"
INTROSPECT = "/oauth/introspect/"


def basic_auth(client: dict[str, str]) -> dict[str, str]:
    pair = f"{quote(client['client_id'], safe='')}:{quote(client['client_secret'], safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def post_form(http: Any, path: str, data: dict[str, str], client: dict[str, str]) -> Any:
    return http.post(
        path, urlencode(data), content_type="application/x-www-form-urlencoded", headers=basic_auth(client)
    )


@pytest.fixture
def seed(signing_key, tmp_path) -> dict[str, Any]:
    out = tmp_path / "seed.json"
    call_command("bench_seed", scale=10, single_use=3, out=str(out), stdout=io.StringIO())
    return json.loads(out.read_text())


@pytest.mark.parametrize("path", ["/bench/floor-hello", "/bench/floor-db"])
def test_floor_views_are_not_routed_unless_the_benchmark_asks(client, db, path):
    assert client.get(path).status_code == 404


def test_floor_db_is_one_indexed_query(seed, django_assert_num_queries):
    from idp.ops.bench import floor_db

    request = RequestFactory().get("/bench/floor-db", {"client_id": seed["clients"]["machine"]["client_id"]})
    with django_assert_num_queries(1):
        assert floor_db(request).status_code == 200


def test_seeded_opaque_token_introspects_active(client, seed):
    reply = post_form(client, INTROSPECT, {"token": seed["access_tokens"][0]}, seed["clients"]["resource_server"])
    assert reply.status_code == 200
    assert reply.json()["active"] is True
    assert reply.json()["scope"] == "openid profile"


def test_seeded_api_key_introspects_active(client, seed):
    reply = post_form(client, INTROSPECT, {"token": seed["api_keys"][0]}, seed["clients"]["resource_server"])
    assert reply.status_code == 200
    assert reply.json()["active"] is True
    assert reply.json()["token_type"] == "api_key"
    assert reply.json()["permissions"]  # the key carries the idp-admin role its owner holds


def test_seeded_code_redeems_once_with_its_verifier(client, seed):
    web = seed["clients"]["web"]
    exchange = {
        "grant_type": "authorization_code",
        "code": seed["codes"][0],
        "redirect_uri": web["redirect_uri"],
        "code_verifier": seed["code_verifier"],
    }
    reply = post_form(client, TOKEN, exchange, web)
    assert reply.status_code == 200, reply.content
    assert {"access_token", "id_token", "refresh_token"} <= set(reply.json())
    # RFC 6749 §4.1.2: single-use, which is why the benchmark never presents a code twice.
    assert post_form(client, TOKEN, exchange, web).status_code == 400


def test_seeded_refresh_token_refreshes(client, seed):
    web = seed["clients"]["web"]
    reply = post_form(client, TOKEN, {"grant_type": "refresh_token", "refresh_token": seed["refresh_tokens"][0]}, web)
    assert reply.status_code == 200, reply.content
    assert reply.json()["refresh_token"] != seed["refresh_tokens"][0]


def test_seeded_machine_client_gets_a_token(client, seed):
    grant = {"grant_type": "client_credentials", "scope": "profile"}
    reply = post_form(client, TOKEN, grant, seed["clients"]["machine"])
    assert reply.status_code == 200, reply.content


def test_extending_fills_up_to_the_scale_and_adds_single_use_credentials(transactional_db, signing_key, tmp_path):
    from apikeys.models import ApiKey
    from idp.models import AccessToken, Grant, RefreshToken

    base, extended = tmp_path / "base.json", tmp_path / "extended.json"
    call_command("bench_seed", scale=10, single_use=0, out=str(base), stdout=io.StringIO())
    call_command("bench_seed", extend=str(base), scale=500, single_use=4, out=str(extended), stdout=io.StringIO())
    seed = json.loads(extended.read_text())
    assert seed["scale"] == 500
    assert len(seed["codes"]) == len(seed["refresh_tokens"]) == 4
    assert ApiKey.objects.count() == 500
    assert AccessToken.objects.count() == 500 + 4  # each refresh token came with its access token
    assert Grant.objects.count() == RefreshToken.objects.count() == 4
    assert len(set(ApiKey.objects.values_list("public_id", flat=True))) == 500
