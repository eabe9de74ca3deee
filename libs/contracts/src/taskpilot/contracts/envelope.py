"""The envelope every message on the bus carries.

A message is a pydantic model whose fields are the envelope plus its own payload. Readers
ignore fields they do not know (``extra="ignore"``), so adding an optional field is a
compatible change; anything else bumps ``schema_version`` and keeps the old shape readable.
The W3C ``traceparent`` travels in the NATS headers, not in the body.
"""

from __future__ import annotations

import builtins
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _subject_token(value: str) -> str:
    # Tenant and lead ids become NATS subject tokens: no dots, spaces or wildcards.
    if not _TOKEN.fullmatch(value):
        raise ValueError("must be 1-64 characters of letters, digits, '_' or '-'")
    return value


TenantId = Annotated[str, AfterValidator(_subject_token)]
"""A tenant's id; safe to use as a NATS subject token and a Postgres setting."""

LeadId = Annotated[str, AfterValidator(_subject_token)]
"""A lead's WhatsApp id (``wa_id``, digits) or Meta's business-scoped user id."""


M = TypeVar("M", bound="Message")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Envelope fields shared by every command and event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    CHANNEL: ClassVar[Any] = None  # a taskpilot.contracts.subjects.Channel
    TYPE: ClassVar[str] = "Message"
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = ""
    schema_version: int = 0
    tenant_id: TenantId
    correlation_id: str = Field(description="The inbound wamid or request id that started it all")
    causation_id: str | None = Field(default=None, description="event_id of the direct cause")
    occurred_at: datetime = Field(default_factory=utcnow)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.TYPE = cls.__name__

    def model_post_init(self, context: Any, /) -> None:
        # Fill type and version from the class so senders never spell them.
        if not self.type:
            object.__setattr__(self, "type", self.TYPE)
        if not self.schema_version:
            object.__setattr__(self, "schema_version", self.SCHEMA_VERSION)

    def subject_parts(self) -> dict[str, str]:
        """Placeholders of this message's channel besides the tenant."""
        return {}

    def subject(self) -> str:
        return self.CHANNEL.subject(tenant=self.tenant_id, **self.subject_parts())

    def caused(self, cls: builtins.type[M], **payload: Any) -> M:
        """Build the next message in the chain: same tenant and correlation, caused by self."""
        return cls(
            tenant_id=self.tenant_id,
            correlation_id=self.correlation_id,
            causation_id=str(self.event_id),
            **payload,
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.model_validate_json(data)
