"""Secrets at rest: AES-GCM sealing with a rotating key ring."""

from __future__ import annotations

import base64

import pytest

from taskpilot.tenancy import SecretBox, SecretBoxError, generate_key

OLD, NEW = generate_key(), generate_key()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox({"k1": NEW})


def test_a_sealed_secret_opens_to_the_plaintext(box) -> None:
    sealed = box.seal("EAAG-access-token", context="acme/access_token")

    assert box.open(sealed, context="acme/access_token") == "EAAG-access-token"


def test_a_sealed_value_names_the_format_and_key_and_hides_the_plaintext(box) -> None:
    sealed = box.seal("EAAG-access-token")

    assert sealed.startswith("tp1.k1.")
    assert "EAAG" not in sealed


def test_sealing_twice_gives_different_values(box) -> None:
    assert box.seal("same") != box.seal("same")


@pytest.mark.parametrize("plaintext", ["", "ñandú ✓ 🔐", "x" * 10_000])
def test_any_text_round_trips(box, plaintext: str) -> None:
    assert box.open(box.seal(plaintext)) == plaintext


def test_a_secret_does_not_open_in_another_context(box) -> None:
    sealed = box.seal("token", context="acme/access_token")

    with pytest.raises(SecretBoxError):
        box.open(sealed, context="globex/access_token")
    with pytest.raises(SecretBoxError):
        box.open(sealed)


def test_a_tampered_ciphertext_does_not_open(box) -> None:
    prefix, kid, body = box.seal("token").split(".")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 0x01
    tampered = f"{prefix}.{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"

    with pytest.raises(SecretBoxError):
        box.open(tampered)


@pytest.mark.parametrize(
    "sealed",
    ["", "plaintext", "tp2.k1.AAAA", "tp1.k1.", "tp1.k1.not base64!", "tp1.k1.AAAA"],
)
def test_garbage_does_not_open(box, sealed: str) -> None:
    with pytest.raises(SecretBoxError):
        box.open(sealed)


def test_a_value_sealed_with_a_key_not_in_the_ring_does_not_open(box) -> None:
    sealed = SecretBox({"k9": OLD}).seal("token")

    with pytest.raises(SecretBoxError):
        box.open(sealed)


def test_a_value_sealed_under_the_same_key_id_but_another_key_does_not_open(box) -> None:
    sealed = SecretBox({"k1": OLD}).seal("token")

    with pytest.raises(SecretBoxError):
        box.open(sealed)


def test_after_rotation_old_values_open_and_new_ones_use_the_new_key() -> None:
    sealed_before = SecretBox({"k0": OLD}).seal("token", context="acme")
    rotated = SecretBox({"k1": NEW, "k0": OLD})

    assert rotated.open(sealed_before, context="acme") == "token"
    sealed_after = rotated.seal("token", context="acme")
    assert sealed_after.startswith("tp1.k1.")
    assert SecretBox({"k1": NEW}).open(sealed_after, context="acme") == "token"


def test_values_sealed_with_an_old_key_need_rotation() -> None:
    rotated = SecretBox({"k1": NEW, "k0": OLD})

    assert rotated.needs_rotation(SecretBox({"k0": OLD}).seal("token"))
    assert not rotated.needs_rotation(rotated.seal("token"))


def test_the_ring_is_read_from_a_setting_newest_first() -> None:
    box = SecretBox.from_setting(f" k1:{NEW} , k0:{OLD} ,")

    assert box.seal("token").startswith("tp1.k1.")
    assert box.open(SecretBox({"k0": OLD}).seal("token")) == "token"


def test_an_empty_ring_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        SecretBox({})
    with pytest.raises(ValueError):
        SecretBox.from_setting("")


def test_generated_keys_are_256_bit() -> None:
    assert len(base64.urlsafe_b64decode(generate_key())) == 32
    assert generate_key() != generate_key()


def test_a_key_id_with_a_dot_is_refused_or_works() -> None:
    try:
        box = SecretBox({"2025.01": NEW})
    except ValueError:
        return  # refusing such key ids up front is a fine fix too
    assert box.open(box.seal("token")) == "token"
