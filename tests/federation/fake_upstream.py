"""A hostile (or, for the control case, honest) upstream OpenID Connect provider: a small HTTP
server on loopback whose discovery document, JWKS and token endpoint answer what a test says.
The outside world, faked: our own code runs for real against it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import RSAKey

KID = "fake-upstream-1"
CLIENT_ID = "downstream-at-fake"
CLIENT_SECRET = "fake-upstream-secret"
KEY = RSAKey.generate_key(2048, parameters={"kid": KID})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": KID})  # same kid, not published

# (status, content type, body) of the token endpoint's answer, from the form it was posted.
TokenReply = Callable[[dict[str, str]], tuple[int, str, bytes]]


@dataclass
class FakeUpstream:
    url: str = ""
    discovery: Callable[[str], tuple[int, str, bytes]] | None = None  # None: an honest document
    token_reply: TokenReply | None = None
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def id_token(self, *, nonce: str | None, key: RSAKey = KEY, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": CLIENT_ID, "sub": "fake-sub-1", "iat": now, "exp": now + 300} | claims
        if nonce is not None:
            body.setdefault("nonce", nonce)
        return jwt.encode({"alg": alg, "kid": KID}, {k: v for k, v in body.items() if v is not None}, key)

    def tokens(self, id_token: str | None) -> tuple[int, str, bytes]:
        answer = {"access_token": "fake-access", "token_type": "Bearer", "expires_in": 300}
        if id_token is not None:
            answer["id_token"] = id_token
        return 200, "application/json", json.dumps(answer).encode()


def _handler(fake: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/.well-known/openid-configuration":
                if fake.discovery is not None:
                    self._send(*fake.discovery(fake.url))
                    return
                document = {
                    "issuer": fake.url,
                    "authorization_endpoint": f"{fake.url}/authorize",
                    "token_endpoint": f"{fake.url}/token",
                    "jwks_uri": f"{fake.url}/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
                self._send(200, "application/json", json.dumps(document).encode())
            elif self.path == "/jwks":
                self._send(200, "application/json", json.dumps({"keys": [KEY.as_dict(private=False)]}).encode())
            else:
                self._send(404, "text/plain", b"not found")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            fake.token_requests.append(form | {"authorization": self.headers.get("Authorization") or ""})
            if self.path != "/token" or fake.token_reply is None:
                self._send(400, "application/json", b'{"error": "invalid_grant"}')
                return
            self._send(*fake.token_reply(form))

    return Handler


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
