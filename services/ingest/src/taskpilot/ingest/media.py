"""Inbound media, understood: which messages carry it, how big it may be, where it is kept and
whether the bytes are the ones Meta described. No I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
from dataclasses import dataclass

from taskpilot.contracts.whatsapp import MediaContent, WhatsAppMessageReceived

MB = 1024 * 1024
META_LIMITS = {
    "image": 5 * MB,
    "audio": 16 * MB,
    "video": 16 * MB,
    "document": 100 * MB,
    "sticker": 500 * 1024,  # animated; a static sticker is at most 100 KB
}
"""What the WhatsApp Cloud API lets a user send, per kind (Meta's supported media types)."""
STATIC_STICKER_LIMIT = 100 * 1024
_NOT_KEY_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class MediaTooLargeError(Exception):
    """The media is larger than its kind's limit (declared by Meta or counted while reading)."""

    def __init__(self, size: int, limit: int, kind: str):
        super().__init__(f"{kind} of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ChecksumMismatchError(Exception):
    """The bytes read do not hash to the sha256 Meta gave for the media."""


@dataclass(frozen=True)
class MediaInfo:
    """Meta's answer to ``GET /{version}/{media_id}``; ``url`` is short-lived (5 minutes)."""

    media_id: str
    url: str
    mime_type: str
    sha256: str | None
    file_size: int | None


def media_of(message: WhatsAppMessageReceived) -> MediaContent | None:
    return message.content if isinstance(message.content, MediaContent) else None


def size_limit(content: MediaContent, max_bytes: int) -> int:
    """Bytes allowed for this media: Meta's limit for its kind, capped by ours."""
    meta = META_LIMITS[content.kind]
    if content.kind == "sticker" and not content.animated:
        meta = STATIC_STICKER_LIMIT
    return min(meta, max_bytes)


def check_declared_size(info: MediaInfo, content: MediaContent, limit: int) -> None:
    """Refuse before downloading when Meta already says the file is too large."""
    if info.file_size is not None and info.file_size > limit:
        raise MediaTooLargeError(info.file_size, limit, content.kind)


def digest_bytes(expected: str) -> bytes | None:
    """A sha256 as Meta writes it: hex in the media endpoint, base64 in webhooks."""
    text = expected.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return None


def verify(data: bytes, *expected: str | None) -> str:
    """The hex sha256 of ``data``; raises :class:`ChecksumMismatchError` unless it equals every
    expected digest given (a missing one is not checked, an unreadable one fails)."""
    digest = hashlib.sha256(data).digest()
    for claim in expected:
        if claim is None or claim == "":
            continue
        if digest_bytes(claim) != digest:
            raise ChecksumMismatchError(
                f"sha256 of the {len(data)} bytes read is {digest.hex()}, Meta said {claim}"
            )
    return digest.hex()


def object_key(message: WhatsAppMessageReceived, content: MediaContent, mime_type: str) -> str:
    """``{tenant}/{lead}/{wamid}{ext}``: one object per message (a redelivery overwrites the
    same bytes), and a lead's media under one prefix so erasing a lead can find it all."""
    wamid = _NOT_KEY_TOKEN.sub("_", message.wamid)[:128]
    return f"{message.tenant_id}/{message.lead}/{wamid}{extension(mime_type, content)}"


def extension(mime_type: str, content: MediaContent) -> str:
    base = mime_type.split(";", 1)[0].strip().lower()
    known = {"audio/ogg": ".ogg", "image/jpeg": ".jpg", "audio/mpeg": ".mp3", "image/webp": ".webp"}
    guessed = known.get(base) or mimetypes.guess_extension(base, strict=False)
    if guessed:
        return guessed
    if content.filename and "." in content.filename:
        suffix = _NOT_KEY_TOKEN.sub("", content.filename.rsplit(".", 1)[1])[:10]
        return f".{suffix}" if suffix else ""
    return ""
