"""Webhook signatures in Stripe's scheme, both ways: ``t=<unix>,v1=<hex HMAC-SHA256>`` over
``"{t}.{raw body}"``. Stripe signs what it sends us; we sign what we send to tenants' webhooks
the same way, so one verifier recipe serves both. Pure: the clock is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac

DEFAULT_TOLERANCE_S = 300


class BadSignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    payload = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    header: str | None,
    body: bytes,
    secret: str,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a ``t=..,v1=..`` header; returns its timestamp or raises BadSignatureError.

    Any one of several ``v1`` values may match (Stripe sends two while a secret rolls).
    """
    if not header:
        raise BadSignatureError("no signature header")
    timestamp: int | None = None
    candidates = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise BadSignatureError("signature header lacks t= or v1=")
    if abs(now - timestamp) > tolerance_s:
        raise BadSignatureError("signature timestamp outside the tolerance")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise BadSignatureError("signature does not match")
    return timestamp
