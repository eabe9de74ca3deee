"""`make docs`: JSON Schemas and the AsyncAPI document of every public message."""

from __future__ import annotations

import json
from pathlib import Path

from taskpilot.cli.asyncapi import asyncapi_document
from taskpilot.cli.main import main
from taskpilot.contracts.catalogue import MESSAGES


def test_asyncapi_has_a_channel_and_a_schema_for_every_public_message() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    channels = document["channels"]
    assert isinstance(channels, dict)
    addresses = {c["address"] for c in channels.values()}
    assert "conversation.{tenant}.{lead}.lead_message_received" in addresses
    assert "wa.in.{tenant}.{lead}.message" in addresses
    schemas = document["components"]["schemas"]  # type: ignore[index]
    for message in MESSAGES:
        assert any(name.startswith(message.TYPE) for name in schemas), message.TYPE


def test_make_docs_writes_schemas_and_asyncapi(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    main(["contracts", "export", "--out", str(tmp_path / "schemas")])
    assert "AsyncAPI" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert "WhatsAppMessageReceived.v1.schema.json" in written
    assert len(written) >= len(MESSAGES)
    asyncapi = json.loads((tmp_path / "asyncapi.json").read_text())
    assert asyncapi["info"]["title"] == "TaskPilot events"
