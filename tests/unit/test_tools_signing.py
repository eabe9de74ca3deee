"""Webhook signatures in Stripe's scheme (``t=..,v1=..`` over ``"{t}.{body}"``)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from taskpilot.tools.signing import BadSignatureError, signature_header, verify

BODY = b'{"id":"evt_1","type":"checkout.session.completed"}'
SECRET = "whsec_test"
NOW = 1_900_000_000


def test_the_header_is_stripes_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert signature_header(SECRET, NOW, BODY) == f"t={NOW},v1={expected}"


def test_a_good_signature_verifies_and_returns_its_time() -> None:
    assert verify(signature_header(SECRET, NOW, BODY), BODY, SECRET, NOW + 10) == NOW


def test_any_v1_may_match_while_a_secret_rolls() -> None:
    header = signature_header(SECRET, NOW, BODY).replace("v1=", "v1=deadbeef,v1=")

    assert verify(header, BODY, SECRET, NOW) == NOW


@pytest.mark.parametrize(
    ("header", "body", "now", "problem"),
    [
        (None, BODY, NOW, "no signature"),
        ("garbage", BODY, NOW, "lacks"),
        (f"t={NOW}", BODY, NOW, "lacks"),
        (signature_header("other", NOW, BODY), BODY, NOW, "does not match"),
        (signature_header(SECRET, NOW, BODY), BODY + b" ", NOW, "does not match"),
        (signature_header(SECRET, NOW, BODY), BODY, NOW + 301, "tolerance"),
        (signature_header(SECRET, NOW, BODY), BODY, NOW - 301, "tolerance"),
    ],
)
def test_bad_signatures_are_refused(
    header: str | None, body: bytes, now: int, problem: str
) -> None:
    with pytest.raises(BadSignatureError, match=problem):
        verify(header, body, SECRET, now)
