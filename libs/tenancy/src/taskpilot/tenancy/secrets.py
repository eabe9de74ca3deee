"""Secrets at rest: AES-256-GCM with versioned keys, so keys can rotate.

A sealed value is ``b"tp1." + key_id + b"." + nonce + ciphertext`` (base64 for text columns).
The first key of the ring seals; every key of the ring opens.
"""

from __future__ import annotations

import base64
import os
import re
import secrets as _secrets
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "tp1"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class SecretBoxError(ValueError):
    """A sealed value could not be opened (wrong key, tampering, unknown key id)."""


def generate_key() -> str:
    return base64.urlsafe_b64encode(_secrets.token_bytes(32)).decode()


class SecretBox:
    """Seals and opens secrets with a key ring ``{key_id: base64 key}``, first key current."""

    def __init__(self, keys: Mapping[str, str]):
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        bad = [kid for kid in keys if not _KEY_ID.fullmatch(kid)]
        if bad:
            raise ValueError(f"key ids must be letters, digits, '_' or '-': {bad}")
        self._ring = {kid: AESGCM(base64.urlsafe_b64decode(k)) for kid, k in keys.items()}
        self._current = next(iter(keys))

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """Parse ``"kid1:key1,kid0:key0"`` (newest first)."""
        pairs = (item.split(":", 1) for item in value.split(",") if item.strip())
        return cls({kid.strip(): key.strip() for kid, key in pairs})

    def seal(self, plaintext: str, *, context: str = "") -> str:
        nonce = os.urandom(12)
        ct = self._ring[self._current].encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.urlsafe_b64encode(nonce + ct).decode()
        return f"{_PREFIX}.{self._current}.{body}"

    def open(self, sealed: str, *, context: str = "") -> str:
        try:
            prefix, kid, body = sealed.split(".", 2)
            if prefix != _PREFIX:
                raise SecretBoxError("not a sealed value")
            raw = base64.urlsafe_b64decode(body)
            return self._ring[kid].decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (KeyError, ValueError) as exc:
            raise SecretBoxError("cannot open sealed value") from exc
        except Exception as exc:  # cryptography's InvalidTag has no common base we can name
            raise SecretBoxError("cannot open sealed value") from exc

    def needs_rotation(self, sealed: str) -> bool:
        parts = sealed.split(".", 2)
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise SecretBoxError("not a sealed value")
        return parts[1] != self._current
