"""Levels and methods (idp.mfa.levels): what a sign-in reaches, what a request asks for, and the acr
answered, including for hostile claims parameters."""

from __future__ import annotations

import pytest

from idp.mfa.levels import ACR_MFA, ACR_PHR, ACR_PWD, Level, amr_with, level_of_amr, requested


@pytest.mark.parametrize(
    ("amr", "level"),
    [
        (["pwd"], Level.PWD),
        (amr_with(["pwd"], "otp"), Level.MFA),
        (amr_with(["pwd"], "rec"), Level.MFA),
        (amr_with(["pwd"], "hwk"), Level.PHR),
        (amr_with(["hwk"], "user"), Level.PHR),
        (["otp"], Level.PWD),  # one factor, whatever it is
    ],
)
def test_the_level_a_set_of_methods_reaches(amr, level):
    assert level_of_amr(amr) == level


def test_a_recovery_code_shows_as_mfa_only():
    assert amr_with(["pwd"], "rec") == ["pwd", "mfa"]


def test_acr_values_are_met_by_any_known_value():
    asked = requested(acr_values=f"urn:example:x {ACR_PHR} {ACR_MFA}", claims=None)
    assert asked.level == Level.MFA and not asked.essential
    assert asked.acr_for(Level.PHR) == ACR_PHR  # not essential: the level reached


def test_an_essential_acr_is_answered_with_a_requested_value():
    asked = requested(acr_values=None, claims={"id_token": {"acr": {"essential": True, "values": [ACR_PWD, ACR_MFA]}}})
    assert asked.level == Level.PWD and asked.essential
    assert asked.acr_for(Level.PHR) == ACR_MFA
    assert asked.acr_for(Level.PWD) == ACR_PWD


@pytest.mark.parametrize(
    "claims",
    [
        {"id_token": {"acr": {"essential": "yes", "values": "urn:idp:acr:mfa"}}},
        {"id_token": {"acr": None}},
        {"id_token": ["acr"]},
        {"id_token": {"acr": {"values": [1, None, {"a": 1}]}}},
        ["id_token"],
        "acr",
        None,
    ],
)
def test_malformed_claims_ask_for_nothing(claims):
    asked = requested(acr_values=None, claims=claims)
    assert asked.level is None and not asked.essential
