"""Media decisions of ingest (no I/O): limits per kind, checksums as Meta writes them, keys."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from taskpilot.contracts.whatsapp import MediaContent, TextContent, WhatsAppMessageReceived
from taskpilot.ingest import media
from taskpilot.ingest.handlers import MediaMessages

MB = 1024 * 1024


def received(content: Any, wamid: str = "wamid.HBgL=") -> WhatsAppMessageReceived:
    return WhatsAppMessageReceived(
        tenant_id="shop",
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id="555",
        lead="34600000001",
        wa_timestamp=datetime.now(UTC),
        content=content,
    )


def image(**fields: Any) -> MediaContent:
    return MediaContent(**({"kind": "image", "media_id": "1"} | fields))


@pytest.mark.parametrize(
    ("kind", "animated", "expected"),
    [
        ("image", False, 5 * MB),
        ("audio", False, 16 * MB),
        ("video", False, 16 * MB),
        ("document", False, 16 * MB),  # Meta allows 100 MB; our default cap is lower
        ("sticker", True, 500 * 1024),
        ("sticker", False, 100 * 1024),
    ],
)
def test_limits_are_meta_s_per_kind_under_our_cap(kind: str, animated: bool, expected: int) -> None:
    content = MediaContent(kind=kind, media_id="1", animated=animated)

    assert media.size_limit(content, 16 * MB) == expected


def test_a_declared_size_over_the_limit_is_refused() -> None:
    info = media.MediaInfo("1", "http://x", "image/jpeg", None, 6 * MB)

    with pytest.raises(media.MediaTooLargeError):
        media.check_declared_size(info, image(), 5 * MB)
    media.check_declared_size(
        media.MediaInfo("1", "http://x", "image/jpeg", None, None), image(), 1
    )


def test_sha256_is_accepted_as_hex_base64_and_urlsafe_base64() -> None:
    data = b"\xfb\xff" * 500
    digest = hashlib.sha256(data).digest()

    for claim in (
        digest.hex(),
        digest.hex().upper(),
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
    ):
        assert media.verify(data, claim) == digest.hex()
    assert media.verify(data, None, "") == digest.hex()


@pytest.mark.parametrize("claim", ["00" * 32, "not a digest", base64.b64encode(b"short").decode()])
def test_a_wrong_or_unreadable_sha256_is_a_mismatch(claim: str) -> None:
    with pytest.raises(media.ChecksumMismatchError):
        media.verify(b"data", hashlib.sha256(b"data").hexdigest(), claim)


def test_object_keys_are_per_tenant_and_lead_and_safe() -> None:
    message = received(image(), wamid="wamid.HBgL/../x=")

    key = media.object_key(message, image(), "image/jpeg")

    assert key == "shop/34600000001/wamid_HBgL____x_.jpg"


@pytest.mark.parametrize(
    ("mime_type", "filename", "suffix"),
    [
        ("audio/ogg; codecs=opus", None, ".ogg"),
        ("application/pdf", "menu.pdf", ".pdf"),
        ("application/x-unknown-thing", "price list.XLSX", ".XLSX"),
        ("application/x-unknown-thing", None, ""),
    ],
)
def test_extensions_come_from_the_mime_type_then_the_filename(
    mime_type: str, filename: str | None, suffix: str
) -> None:
    content = MediaContent(kind="document", media_id="1", filename=filename)

    assert media.extension(mime_type, content) == suffix


def test_the_media_consumer_parses_only_messages_with_media() -> None:
    parser = MediaMessages()

    assert parser.model_validate_json(received(TextContent(body="hi")).to_bytes()) is None
    assert (
        parser.model_validate_json(received(TextContent(body='my "media_id" is 3')).to_bytes())
        is None
    )
    parsed = parser.model_validate_json(received(image()).to_bytes())
    assert parsed is not None and media.media_of(parsed) == image()
