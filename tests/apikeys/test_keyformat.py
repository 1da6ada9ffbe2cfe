"""The key format: idpk_<12 base62 public id>_<43 base62 secret><6 base62 CRC32 checksum>.

A typo, a truncated paste or a look-alike fails the checksum offline: apikey_verify refuses it
without a database query, and a secret scanner can recognise a real key with nothing but zlib."""

from __future__ import annotations

import random
import re
import string
import zlib

import pytest

from apikeys.keyformat import key_new, key_parse, public_id_new
from apikeys.selectors import apikey_verify

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62, in value order
# What a secret scanner would match (GitHub's secret scanning takes patterns like this one).
SCANNER_PATTERN = re.compile(r"idpk_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}")
BODY_START = len("idpk_")


def scanner_checksum(body: str) -> str:
    """The checksum as the format documents it, written here independently of apikeys.keyformat:
    CRC32 of everything before it, in base62, 6 characters, most significant digit first."""
    number, digits = zlib.crc32(body.encode("ascii")), ""
    for _ in range(6):
        number, digit = divmod(number, 62)
        digits = ALPHABET[digit] + digits
    assert number == 0, "a CRC32 fits in six base62 digits"
    return digits


def scanner_says_real(candidate: str) -> bool:
    return SCANNER_PATTERN.fullmatch(candidate) is not None and scanner_checksum(candidate[:-6]) == candidate[-6:]


def secret_of(key: str) -> str:
    return key[BODY_START + 13 : -6]


def base62_value(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + ALPHABET.index(char)
    return value


def test_an_issued_key_has_the_documented_shape(admin_key):
    key = admin_key.secret

    assert len(key) == 5 + 12 + 1 + 43 + 6 == 67
    assert key.startswith(f"idpk_{admin_key.key.public_id}_")
    assert SCANNER_PATTERN.fullmatch(key)
    assert re.fullmatch(r"\w+", key), "letters, digits and underscores only: a double click selects the whole key"
    assert re.fullmatch(r"[0-9A-Za-z]{12}", admin_key.key.public_id)


def test_a_scanner_tells_a_real_key_from_noise_offline(issue_key):
    keys = [issue_key(name=f"key {n}").secret for n in range(5)]
    assert all(scanner_says_real(key) for key in keys)

    rng = random.Random(7)
    lookalikes = [
        "idpk_" + "".join(rng.choices(ALPHABET, k=12)) + "_" + "".join(rng.choices(ALPHABET, k=49)) for _ in range(2000)
    ]
    # 2000 random look-alikes pass a 32-bit checksum with probability under one in two million.
    assert not [candidate for candidate in lookalikes if scanner_says_real(candidate)]
    assert not [candidate for candidate in lookalikes if key_parse(candidate) is not None]


def test_keys_are_distinct_and_every_one_of_the_256_secret_bits_varies():
    keys = [key_new(public_id_new()) for _ in range(256)]
    assert len(set(keys)) == 256
    assert len({key[BODY_START : BODY_START + 12] for key in keys}) == 256, "public ids are random"
    assert len({secret_of(key) for key in keys}) == 256

    secrets_ = [base62_value(secret_of(key)) for key in keys]
    assert all(len(secret_of(key)) == 43 for key in keys)
    assert max(secrets_) < 2**256
    # Each of the 256 bit positions is set in some key and clear in another: the secret carries
    # 256 random bits, not fewer bits spread over 43 characters. (A truly random bit is the same
    # in all 256 keys with probability 2**-255.)
    constant_bits = [bit for bit in range(256) if len({(value >> bit) & 1 for value in secrets_}) == 1]
    assert constant_bits == []


def test_issued_keys_are_distinct(issue_key):
    issued = [issue_key(name=f"key {n}") for n in range(20)]
    assert len({item.secret for item in issued}) == 20
    assert len({item.key.public_id for item in issued}) == 20
    assert len({item.key.secret_hash for item in issued}) == 20


def mistakes(key: str) -> list[tuple[str, str]]:
    """(label, mistyped key) pairs: each one slip a person or a copy-paste makes."""
    found = []
    for position in range(BODY_START, len(key)):
        if key[position] == "_":
            continue
        other = ALPHABET[(ALPHABET.index(key[position]) + 1) % 62]
        found.append((f"character {position} changed", key[:position] + other + key[position + 1 :]))
    letters = [position for position in range(BODY_START, len(key)) if key[position].isalpha()]
    for position in letters:
        found.append((f"case of {position} swapped", key[:position] + key[position].swapcase() + key[position + 1 :]))
    for position in range(BODY_START, len(key) - 1):
        if key[position] != key[position + 1] and "_" not in key[position : position + 2]:
            swapped = key[:position] + key[position + 1] + key[position] + key[position + 2 :]
            found.append((f"characters {position} and {position + 1} transposed", swapped))
    found += [
        ("last character cut", key[:-1]),
        ("checksum cut", key[:-6]),
        ("half pasted", key[: len(key) // 2]),
        ("one character too many", key + "A"),
        ("whole key upper case", key.upper()),
        ("whole key swapped case", key[:BODY_START] + key[BODY_START:].swapcase()),
        ("prefix with a dash", "idpk-" + key[BODY_START:]),
        ("prefix upper case", "IDPK_" + key[BODY_START:]),
        ("a space inside", key[:30] + " " + key[31:]),
        ("a look-alike Cyrillic letter", key[:20] + "\u0430" + key[21:]),
        ("a NUL inside", key[:40] + "\x00" + key[41:]),
        ("a newline at the end", key + "\n"),
        ("empty", ""),
        ("the prefix alone", "idpk_"),
    ]
    return found


def test_the_intact_key_verifies_with_one_query(admin_key, django_assert_num_queries):
    with django_assert_num_queries(1):
        verified = apikey_verify(presented=admin_key.secret)
    assert verified is not None
    assert verified.key.pk == admin_key.key.pk


def test_every_slip_fails_the_checksum_without_a_database_query(admin_key, django_assert_num_queries):
    slips = mistakes(admin_key.secret)
    assert len(slips) > 150, "every position of the key is tried"
    accepted = []
    with django_assert_num_queries(0):
        for label, candidate in slips:
            if key_parse(candidate) is not None or apikey_verify(presented=candidate) is not None:
                accepted.append(label)
    assert accepted == []
    assert not [label for label, candidate in slips if scanner_says_real(candidate)], "a scanner agrees"


@pytest.mark.parametrize("length", [0, 1, 66, 68, 10 * 1024])
def test_a_wrong_length_costs_no_query(db, django_assert_num_queries, length):
    with django_assert_num_queries(0):
        assert apikey_verify(presented=("idpk_" + "A" * length)[:length]) is None
