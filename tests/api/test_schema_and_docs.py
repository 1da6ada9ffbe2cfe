"""The OpenAPI schema is valid by drf-spectacular's own checks, warns about nothing and describes
every endpoint with its bearer scheme; the Swagger UI page loads only our own files."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_schema_validates_without_warnings_and_lists_every_endpoint(tmp_path):
    target = tmp_path / "schema.yaml"
    run = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(target)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "warning" not in run.stderr.lower(), run.stderr

    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": schema_bearer_description(schema)},
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": schema["components"]["securitySchemes"]["apiKey"]["description"],
        },
    }
    assert "idp.manage" in schema["components"]["securitySchemes"]["apiKey"]["description"]
    assert set(schema["paths"]) == {
        "/api/v1/users/",
        "/api/v1/users/{user_id}/deactivate/",
        "/api/v1/users/{user_id}/mfa-reset/",
        "/api/v1/users/{user_id}/sessions/",
        "/api/v1/users/{user_id}/sessions/end/",
        "/api/v1/users/{user_id}/sessions/{session_id}/",
        "/api/v1/permissions/",
        "/api/v1/roles/",
        "/api/v1/roles/{role_id}/",
        "/api/v1/role-assignments/",
        "/api/v1/role-assignments/{assignment_id}/",
        "/api/v1/clients/",
        "/api/v1/clients/{client_id}/rotate-secret/",
        "/api/v1/clients/{client_id}/disable/",
        "/api/v1/audit/",
    }
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"apiKey": []}, {"bearer": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                name = body["schema"]["$ref"].rpartition("/")[2]
                assert components[name]["additionalProperties"] is False, name
    # Lists are paginated, filtered and ordered; creates answer 201 with the object's shape.
    roles = schema["paths"]["/api/v1/roles/"]
    parameters = {parameter["name"] for parameter in roles["get"]["parameters"]}
    assert {"limit", "offset", "ordering", "name", "client_id", "is_global", "permission"} <= parameters
    assert roles["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "PaginatedRoleOutputList"
    )
    assert roles["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("RoleOutput")
    user_input = components["UserListCreateInput"]["properties"]
    assert "is_staff" not in user_input and "is_superuser" not in user_input
    assert user_input["username"]["maxLength"] == 150
    rotate = schema["paths"]["/api/v1/clients/{client_id}/rotate-secret/"]["post"]
    assert rotate["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ClientSecretRotateInput")
    assert components["ClientSecretRotateInput"]["properties"]["grace_seconds"]["maximum"] == 30 * 24 * 3600


def schema_bearer_description(schema: dict) -> str:
    description = schema["components"]["securitySchemes"]["bearer"]["description"]
    assert "idp.manage" in description
    return description


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name):
                self.urls.append(attributes[name])


def test_the_docs_page_renders_and_loads_only_our_own_files(live_server):
    page = requests.get(f"{live_server.url}/api/docs/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "swagger-ui" in page.text

    parser = _References()
    parser.feed(page.text)
    assert parser.urls, "the page links its script and style sheet"
    for url in parser.urls:
        absolute = urljoin(page.url, url)
        assert urlsplit(absolute).netloc == urlsplit(live_server.url).netloc, f"{url} is not ours"
        assert requests.get(absolute, timeout=10).status_code == 200, url
    assert "cdn" not in page.text.lower()

    schema = requests.get(f"{live_server.url}/api/v1/schema/?format=json", timeout=10)
    assert schema.status_code == 200
    assert "/api/v1/roles/" in schema.json()["paths"]
