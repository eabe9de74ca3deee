"""WhatsApp edge messages (owner: ingest). No other service knows Meta's formats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message


class _Content(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TextContent(_Content):
    kind: Literal["text"] = "text"
    body: str


class MediaContent(_Content):
    kind: Literal["image", "audio", "video", "document", "sticker"]
    media_id: str
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False
    animated: bool = False
    stored_at: str | None = Field(default=None, description="object-store key once downloaded")


class InteractiveReplyContent(_Content):
    kind: Literal["button_reply", "list_reply"]
    reply_id: str
    title: str
    description: str | None = None


class ButtonContent(_Content):
    """Quick-reply button of a template message."""

    kind: Literal["button"] = "button"
    payload: str | None = None
    text: str


class LocationContent(_Content):
    kind: Literal["location"] = "location"
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ContactsContent(_Content):
    kind: Literal["contacts"] = "contacts"
    contacts: list[dict[str, Any]]


class ReactionContent(_Content):
    kind: Literal["reaction"] = "reaction"
    message_id: str
    emoji: str | None = Field(default=None, description="None when the reaction was removed")


class UnsupportedContent(_Content):
    kind: Literal["unsupported"] = "unsupported"
    errors: list[dict[str, Any]] = []
    type: str | None = Field(default=None, description="What it was, e.g. 'edit', 'poll_creation'")


class UnknownContent(_Content):
    """A type this version does not parse; the raw object is kept for later readers."""

    kind: Literal["unknown"] = "unknown"
    type: str
    raw: dict[str, Any]


Content = Annotated[
    TextContent
    | MediaContent
    | InteractiveReplyContent
    | ButtonContent
    | LocationContent
    | ContactsContent
    | ReactionContent
    | UnsupportedContent
    | UnknownContent,
    Field(discriminator="kind"),
]


class MessageContext(_Content):
    """Set when the lead replied to, or forwarded, a message."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, serialize_by_alias=True
    )

    message_id: str | None = Field(
        default=None, validation_alias=AliasChoices("id", "message_id"), serialization_alias="id"
    )
    from_: str | None = Field(default=None, alias="from")
    forwarded: bool = False
    frequently_forwarded: bool = False


class WhatsAppMessageReceived(Message):
    """A lead's message, exactly as WhatsApp delivered it, one per inbound message."""

    CHANNEL: ClassVar = subjects.WA_MESSAGE_RECEIVED

    wamid: str
    phone_number_id: str
    lead: LeadId = Field(description="wa_id, or the business-scoped user id when wa_id is absent")
    lead_name: str | None = None
    wa_timestamp: datetime
    content: Content
    context: MessageContext | None = None

    def subject_parts(self) -> dict[str, str]:
        return {"lead": self.lead}


class WhatsAppStatusReceived(Message):
    """Delivery status of a message the business sent."""

    CHANNEL: ClassVar = subjects.WA_STATUS_RECEIVED

    wamid: str
    phone_number_id: str
    lead: LeadId
    status: Literal["sent", "delivered", "read", "failed", "played", "deleted", "unknown"]
    wa_timestamp: datetime
    conversation: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = []

    def subject_parts(self) -> dict[str, str]:
        return {"lead": self.lead}


class SendWhatsAppMessage(Message):
    """Command to the sender: deliver this to the lead. Idempotent by ``event_id``."""

    CHANNEL: ClassVar = subjects.WA_SEND

    conversation_id: str
    phone_number_id: str
    to: LeadId
    text: str
    reply_to_wamid: str | None = None
    reference: str | None = Field(default=None, description="Opaque; echoed in the outcome")


class WhatsAppMessageSent(Message):
    CHANNEL: ClassVar = subjects.WA_SENT

    conversation_id: str
    command_id: str
    wamid: str
    to: LeadId
    reference: str | None = None


class WhatsAppSendFailed(Message):
    CHANNEL: ClassVar = subjects.WA_SEND_FAILED

    conversation_id: str
    command_id: str
    to: LeadId
    code: int | None = None
    reason: str
    reference: str | None = None
