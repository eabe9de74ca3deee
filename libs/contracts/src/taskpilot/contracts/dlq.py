"""Dead letters: what could not be processed, and why."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import Message

UNKNOWN_TENANT = "_unknown"


class DeadLettered(Message):
    """A message (or webhook body) that failed for good, kept whole for inspection and replay."""

    CHANNEL: ClassVar = subjects.DEAD_LETTER

    origin: str = Field(description="Where it failed: a consumer name, or 'ingest.webhook'")
    reason: str = Field(description="A short machine-readable cause, e.g. 'malformed_json'")
    error: str = Field(description="The human-readable error")
    original_subject: str | None = None
    stream: str | None = None
    stream_seq: int | None = None
    attempts: int = 1
    headers: dict[str, str] = {}
    payload: str = Field(description="The original body, utf-8 (or base64 when binary)")
    payload_encoding: str = "utf-8"
    trace_id: str | None = None

    def subject_parts(self) -> dict[str, str]:
        return {"origin": "".join(c if c.isalnum() or c in "_-" else "_" for c in self.origin)}
