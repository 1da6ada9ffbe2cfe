"""What an attacker holding a password (or a password-only session) tried against the second step,
and what now stops it: first recovery codes, the consent form, a planted authenticator app,
simultaneous guesses, the dashboard, and resets of stronger accounts."""

from __future__ import annotations

import threading
from urllib.parse import urlencode, urljoin

import pytest
import requests
from django.urls import reverse

import audit
from accounts.models import ADMIN_ROLE, Role
from accounts.services import role_grant
from audit.models import AuditEvent
from idp.mfa import totp
from idp.models import Application, Grant, RecoveryCode, TotpDevice
from tests.api.conftest import (  # noqa: F401 - fixtures, used by name
    ALL_PERMISSIONS,
    console,
    management,
    service_subject,
)
from tests.factories import (
    USER_PASSWORD,
    make_client,
    make_staff,
    make_user,
    relying_party,
    signed_in_client,
    tokens_at,
    totp_device,
)
from tests.mfa.codes import totp_code
from tests.relying_party import parse_form

SYSTEM = audit.Actor.system("tests")


@pytest.mark.django_db
def test_a_password_session_collects_no_first_recovery_codes():
    # The user has a factor (set up elsewhere) and no codes yet; this session signed in with a
    # password alone. Codes would let it prove a second factor it does not have.
    user = make_user()
    totp_device(user)
    browser = signed_in_client(user, second_factor=False)
    reply = browser.post(reverse("mfa-first-recovery-codes"))
    assert reply.status_code == 302
    assert not RecoveryCode.objects.filter(user=user).exists()


def _authorization_query(application: Application) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": "http://127.0.0.1:9999/callback",
        "scope": "openid",
        "state": "s1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("client_id_form", ["{id}", " {id}", "{id}\n"])
def test_the_consent_form_is_held_to_the_clients_level(client_id_form):
    application = make_client(redirect_uris=["http://127.0.0.1:9999/callback"]).application
    Application.objects.filter(pk=application.pk).update(require_mfa=True)
    alice = make_user()
    browser = signed_in_client(alice, second_factor=False)
    query = _authorization_query(application)
    page = browser.get(f"/oauth/authorize/?{urlencode(query)}")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/verify/")
    form = query | {"client_id": client_id_form.format(id=application.client_id), "allow": "Authorize"}
    posted = browser.post(f"/oauth/authorize/?{urlencode(query)}", form | {"csrfmiddlewaretoken": "x"})
    assert "code=" not in posted.get("Location", "")
    assert not Grant.objects.filter(user=alice).exists()


@pytest.mark.django_db
def test_an_essential_acr_in_the_consent_form_alone_is_held_to_too():
    application = make_client(redirect_uris=["http://127.0.0.1:9999/callback"]).application
    alice = make_user()
    browser = signed_in_client(alice, second_factor=False)
    query = _authorization_query(application)
    claims = '{"id_token": {"acr": {"essential": true, "values": ["urn:idp:acr:mfa"]}}}'
    form = query | {"allow": "Authorize", "claims": claims, "csrfmiddlewaretoken": "x"}
    posted = browser.post(f"/oauth/authorize/?{urlencode(query)}", form)
    assert "code=" not in posted.get("Location", "")
    assert not Grant.objects.filter(user=alice).exists()


@pytest.mark.django_db
def test_an_app_started_in_one_session_is_neither_shown_nor_confirmed_in_another():
    user = make_user()
    attacker = signed_in_client(user, second_factor=False)  # holds the password
    assert attacker.post(reverse("security-app-start")).status_code == 302
    planted = TotpDevice.objects.get(user=user, confirmed=False)
    secret = totp.seed_base32(totp.seed_decrypt(planted))
    assert secret in attacker.get(reverse("security")).content.decode()  # its own session sees it

    victim = signed_in_client(user, second_factor=False)
    assert secret not in victim.get(reverse("security")).content.decode()
    victim.post(reverse("security-app-confirm"), {"code": totp_code(totp.seed_decrypt(planted))})
    assert not TotpDevice.objects.filter(user=user, confirmed=True).exists()
    # Starting again makes a new seed: the planted one is gone.
    victim.post(reverse("security-app-start"))
    assert not TotpDevice.objects.filter(pk=planted.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_simultaneous_wrong_codes_count_no_more_than_the_lockout_allows(settings, live_server, signing_key):
    alice = make_user()
    _device, seed = totp_device(alice)
    wrong = "000000" if totp_code(seed) != "000000" else "111111"
    attempts = settings.AXES_FAILURE_LIMIT * 2
    pages = []
    for _ in range(attempts):  # each its own browser, at the second step after the password
        browser = requests.Session()
        page = browser.get(f"{live_server.url}/accounts/login/", timeout=10)
        _, fields = parse_form(page.text)
        fields.update(username=alice.username, password=USER_PASSWORD)
        reply = browser.post(page.url, data=fields, timeout=10)
        assert "/accounts/login/verify/" in reply.url
        pages.append((browser, reply))
    start = threading.Barrier(attempts)
    answers: list[int] = []

    def guess(browser: requests.Session, page: requests.Response) -> None:
        _, fields = parse_form(page.text)
        fields.update(method="totp", code=wrong)
        start.wait()
        answers.append(browser.post(urljoin(page.url, "/accounts/login/verify/"), data=fields, timeout=30).status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in pages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(answers)) <= [200, 429] and 500 not in answers
    failed = AuditEvent.objects.filter(action="mfa.challenge_failed", target_id=str(alice.pk)).count()
    assert failed == settings.AXES_FAILURE_LIMIT  # the rest found the account locked


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["administrator", "staff"])
def test_the_dashboard_needs_the_level_its_user_must_have(who):
    if who == "staff":
        user = make_staff()
    else:
        user = make_user()
        role_grant(role=Role.objects.get(name=ADMIN_ROLE, application__isnull=True), user=user, actor=SYSTEM)
    password_only = signed_in_client(user, second_factor=False)
    for path in (reverse("apikeys:list"), reverse("apikeys:create"), reverse("security")):
        reply = password_only.get(path)
        assert reply.status_code == 302 and reply["Location"].startswith("/accounts/login/verify/"), path
    assert signed_in_client(user).get(reverse("apikeys:list")).status_code == 200


@pytest.mark.django_db
def test_a_reset_of_staff_needs_a_superuser_and_a_reset_revokes_tokens(service_subject, live_server, issued_client):  # noqa: F811
    resetter = service_subject()
    resetter.hold(ALL_PERMISSIONS)
    staff = make_staff()
    totp_device(staff)
    reply = resetter.api().post(f"/users/{staff.pk}/mfa-reset/", {})
    assert reply.status_code == 403
    assert TotpDevice.objects.filter(user=staff).exists()

    alice = make_user()
    tokens = tokens_at(relying_party(live_server.url, issued_client), alice)
    totp_device(alice)
    assert resetter.api().post(f"/users/{alice.pk}/mfa-reset/", {}).status_code == 204
    answer = requests.post(
        f"{live_server.url}/oauth/introspect/",
        data={"token": tokens["access_token"]},
        auth=(issued_client.application.client_id, issued_client.client_secret),
        timeout=10,
    ).json()
    assert answer == {"active": False}
    assert AuditEvent.objects.filter(action="token.revoked", target_id=str(alice.pk)).exists()
