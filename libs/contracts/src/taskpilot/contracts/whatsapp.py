"""WhatsApp edge messages (owner: ingest). No other service knows Meta's formats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message

MediaKind = Literal["image", "audio", "video", "document", "sticker"]


class _Content(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TextContent(_Content):
    kind: Literal["text"] = "text"
    body: str


class MediaContent(_Content):
    kind: MediaKind
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


class WhatsAppMediaStored(Message):
    """The media of an inbound message, downloaded from Meta, checked against its sha256 and
    kept in object storage under ``object_key`` (one per message; ``wamid`` names it)."""

    CHANNEL: ClassVar = subjects.WA_MEDIA_STORED

    wamid: str
    phone_number_id: str
    lead: LeadId
    kind: MediaKind
    media_id: str
    object_key: str = Field(description="key in the media object store, '{tenant}/{lead}/...'")
    size: int = Field(ge=0, description="bytes")
    mime_type: str
    sha256: str = Field(description="hex SHA-256 of the stored bytes, as verified")

    def subject_parts(self) -> dict[str, str]:
        return {"lead": self.lead}


class ReplyButton(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(max_length=256)
    title: str = Field(min_length=1, max_length=20)


class ListRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(max_length=200)
    title: str = Field(min_length=1, max_length=24)
    description: str | None = Field(default=None, max_length=72)


class ListSection(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = Field(max_length=24)
    rows: list[ListRow] = Field(min_length=1, max_length=10)


class Interactive(BaseModel):
    """Reply buttons (up to 3) or a list (one button opening up to 10 rows)."""

    model_config = ConfigDict(frozen=True)

    body: str = Field(min_length=1, max_length=1024)
    buttons: list[ReplyButton] = Field(default=[], max_length=3)
    list_button: str | None = Field(default=None, max_length=20)
    sections: list[ListSection] = Field(default=[], max_length=10)

    @model_validator(mode="after")
    def _one_kind(self) -> Interactive:
        if bool(self.buttons) == bool(self.sections):
            raise ValueError("either buttons or list sections, not both, not neither")
        if self.sections and not self.list_button:
            raise ValueError("a list needs list_button, the text of the button that opens it")
        return self


class TemplateMessage(BaseModel):
    """An approved message template (the only way to write after the 24-hour window)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(default="en", description="Template language code, e.g. 'es_ES'")
    components: list[dict[str, Any]] = []


class SendWhatsAppMessage(Message):
    """Command to the sender: deliver this to the lead. Idempotent by ``event_id``.

    Exactly one of ``text``, ``interactive`` or ``template``.
    """

    CHANNEL: ClassVar = subjects.WA_SEND

    conversation_id: str
    phone_number_id: str
    to: LeadId
    text: str | None = Field(default=None, max_length=4096)
    interactive: Interactive | None = None
    template: TemplateMessage | None = None
    reply_to_wamid: str | None = None
    reference: str | None = Field(default=None, description="Opaque; echoed in the outcome")

    @model_validator(mode="after")
    def _one_body(self) -> SendWhatsAppMessage:
        if sum(x is not None for x in (self.text, self.interactive, self.template)) != 1:
            raise ValueError("exactly one of text, interactive or template")
        return self


class MarkMessageRead(Message):
    """Command to the sender: show the lead's message as read, optionally with the typing
    indicator (while a reply is being prepared; Meta shows it up to 25 s)."""

    CHANNEL: ClassVar = subjects.WA_MARK_READ

    phone_number_id: str
    wamid: str
    typing: bool = True


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
