"""Requests the provider makes to a client's logout URI (Back-Channel Logout 1.0 §2.5), and the
rules a logout URI is registered under.

A client registers the URI, so the provider POSTing to it is a request an outsider steers
(server-side request forgery). In production the provider refuses private, loopback,
link-local, multicast and reserved addresses, twice: at registration (the host's addresses as
they resolve then) and at delivery, against the address the socket actually connected to, so a
name that resolves to a public address at registration and to 127.0.0.1 later (DNS rebinding)
still reaches nothing inside. No proxy from the environment is used (the address checked would
be the proxy's), no redirect is followed (a redirect is another URI, registered by nobody), and
every attempt has a timeout.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from idp.models import LOGOUT_URI_MAX, LOOPBACK_HOSTS


def private_addresses_allowed() -> bool:
    return bool(settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES)


def address_is_public(address: str) -> bool:
    """Whether an IP address is one on the public Internet (not private, loopback, link-local,
    shared, multicast, reserved or unspecified), an IPv4 address inside IPv6 judged as itself."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    return ip.is_global and not ip.is_multicast


def logout_uri_problems(uri: str, *, resolve: bool = True) -> list[str]:
    """Why a back- or front-channel logout URI cannot be registered; [] when it can (or is empty).
    https, or http on 127.0.0.1 / [::1] (as redirect URIs, RFC 8252 §7.3); no fragment
    (Back-Channel Logout §2.2, Front-Channel Logout §2), no user:password; at most LOGOUT_URI_MAX
    characters. Where private addresses are refused (production), the host must resolve to public
    addresses only."""
    if not uri:
        return []
    if len(uri) > LOGOUT_URI_MAX:
        return [f"Must be at most {LOGOUT_URI_MAX} characters."]
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in uri):
        return ["Must not contain spaces or control characters."]
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return ["Not a valid URI."]
    if parts.scheme not in ("https", "http") or not host:
        return ["Must be an absolute https URI."]
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return [f"{uri} must use https; plain http is allowed only for 127.0.0.1 and [::1]."]
    if not _host_is_well_formed(host):
        # Also where names are not resolved (development): the origin goes into the signed-out
        # page's Content-Security-Policy (frame-src), where ';' or ',' would start a directive.
        return ["Not a valid host name."]
    if parts.fragment or uri.endswith("#"):
        return ["Must not have a fragment."]
    if parts.username is not None or parts.password is not None:
        return ["Must not carry a user name or password."]
    if private_addresses_allowed() or not resolve:
        return []
    addresses = host_addresses(host)
    if not addresses:
        return [f"The host {host} does not resolve."]
    if not all(address_is_public(address) for address in addresses):
        return [f"The host {host} is at a private, loopback or otherwise non-public address."]
    return []


HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?", re.ASCII)


def _host_is_well_formed(host: str) -> bool:
    """A DNS name in letters, digits and hyphens (an internationalised one in its xn-- form), or
    an IP address (urlsplit gives it lower-cased, an IPv6 one without its brackets)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOST_NAME.fullmatch(host)) and len(host) <= 253


def host_addresses(host: str) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


class AddressRefused(NewConnectionError):
    """The socket connected to a non-public address, where those are refused."""


class _CheckedConnection:
    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        peer = str(sock.getpeername()[0])
        if not private_addresses_allowed() and not address_is_public(peer):
            sock.close()
            raise AddressRefused(self, f"refused: connected to the non-public address {peer}")  # type: ignore[arg-type]
        return sock


class _CheckedHTTPConnection(_CheckedConnection, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnection, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}


@dataclass(frozen=True)
class Outcome:
    """What became of one POST: delivered (a 2xx), or why not; `transient` failures are retried."""

    delivered: bool
    status: int | None
    error: str
    transient: bool


def form_post(uri: str, data: dict[str, str]) -> Outcome:
    """POST an application/x-www-form-urlencoded body to a registered logout URI: no redirect
    followed, no environment proxy, a timeout, and the connected address checked (see above)."""
    problems = logout_uri_problems(uri, resolve=False)
    if problems:
        return Outcome(False, None, problems[0], transient=False)
    with requests.Session() as session:
        session.trust_env = False
        adapter = _CheckedAdapter(max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            reply = session.post(
                uri,
                data=data,
                allow_redirects=False,
                timeout=settings.IDP_LOGOUT_DELIVERY_TIMEOUT_SECONDS,
                headers={"Cache-Control": "no-cache"},
            )
        except requests.ConnectionError as error:
            reason = getattr(error.args[0], "reason", None) if error.args else None
            if isinstance(reason, AddressRefused):
                return Outcome(False, None, "non_public_address", transient=False)
            return Outcome(False, None, "connection_failed", transient=True)
        except requests.Timeout:
            return Outcome(False, None, "timeout", transient=True)
        except requests.RequestException:
            return Outcome(False, None, "request_failed", transient=True)
        reply.close()
    if 200 <= reply.status_code < 300:
        return Outcome(True, reply.status_code, "", transient=False)
    if 300 <= reply.status_code < 400:
        return Outcome(False, reply.status_code, "redirect_not_followed", transient=False)
    # Back-Channel Logout §2.8: 400 means the RP refused the token; a 5xx may pass.
    return Outcome(False, reply.status_code, "status", transient=reply.status_code >= 500 or reply.status_code == 429)
