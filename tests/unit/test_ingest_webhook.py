"""Ingest's understanding of Meta's WhatsApp Cloud API webhook: pure functions, no I/O.

Payloads follow the shapes of Meta's "messages" webhook reference (text, media, interactive,
button, location, contacts, reaction, unsupported, status messages, BSUID fields).

Error model: only a body that is not a webhook at all raises ``MalformedWebhookError``. An
unreadable update inside a batch (entry, change, value, message or status) is set aside in
``ParsedWebhook.rejected`` and the rest of the batch is still parsed; an oddly typed optional
slot is ignored and its message kept. Tests that expose a known defect are marked
``xfail(strict=True)``: they start failing the day it is fixed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, get_args

import pytest
from pydantic import TypeAdapter, ValidationError

from taskpilot.contracts import LeadId
from taskpilot.contracts.whatsapp import (
    ButtonContent,
    ContactsContent,
    InteractiveReplyContent,
    LocationContent,
    MediaContent,
    MessageContext,
    ReactionContent,
    TextContent,
    UnknownContent,
    UnsupportedContent,
    WhatsAppMessageReceived,
    WhatsAppStatusReceived,
)
from taskpilot.ingest import domain, meta
from taskpilot.ingest.domain import MalformedWebhookError, ParsedWebhook, Unrouted

TENANT = "acme"
NUMBER = "106540352242922"
OTHER_NUMBER = "106540352242923"
FOREIGN_NUMBER = "999000999000999"
WA_ID = "16505551234"
BSUID = "US.13491208655302741918"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
OUR_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
TS = "1749416383"
TS_AT = datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)
SECRET = "app-secret-of-acme"
LEAD_ID = TypeAdapter(LeadId)


# -- payload builders, shaped like Meta's reference ---------------------------------------


def inbound(
    kind: str, body: Any = None, *, wamid: str = WAMID, sender: str | None = WA_ID, **extra: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"id": wamid, "timestamp": TS, "type": kind}
    if sender is not None:
        message["from"] = sender
    if body is not None:
        message[kind] = body
    return message | extra


def status(state: str, *, wamid: str = OUR_WAMID, **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": state, "timestamp": TS, "recipient_id": WA_ID} | extra


def value(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    *,
    number: str | None = NUMBER,
    contacts: list[dict[str, Any]] | None = None,
    errors: list[Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"messaging_product": "whatsapp"}
    if number is not None:
        body["metadata"] = {"display_phone_number": "15550783881", "phone_number_id": number}
    if messages is not None:
        default = [{"profile": {"name": "Sheena Nelson"}, "wa_id": WA_ID}]
        body["contacts"] = default if contacts is None else contacts
        body["messages"] = messages
    if statuses is not None:
        body["statuses"] = statuses
    if errors is not None:
        body["errors"] = errors
    return body


def change(body: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    return {"value": body, "field": field}


def envelope(*changes: dict[str, Any], waba_id: str = "102290129340398") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": list(changes)}],
    }


def split(payload: Any) -> ParsedWebhook:
    return domain.split_webhook(payload, TENANT, {NUMBER, OTHER_NUMBER})


def only_message(message: dict[str, Any], **value_kw: Any) -> WhatsAppMessageReceived:
    parsed = split(envelope(change(value([message], **value_kw))))
    assert len(parsed.messages) == 1
    assert not parsed.statuses and not parsed.unrouted
    return parsed.messages[0]


def only_status(state: dict[str, Any]) -> WhatsAppStatusReceived:
    parsed = split(envelope(change(value(statuses=[state]))))
    assert len(parsed.statuses) == 1
    assert not parsed.messages and not parsed.unrouted
    return parsed.statuses[0]


# -- X-Hub-Signature-256 ------------------------------------------------------------------

BODY = json.dumps(meta.text_webhook(NUMBER, WA_ID, "hi", WAMID)).encode()


def test_signature_is_sha256_hmac_of_the_raw_body_with_the_app_secret() -> None:
    known_answer = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    body = b"The quick brown fox jumps over the lazy dog"
    assert domain.signature_of(body, "key") == f"sha256={known_answer}"


def test_correct_signature_is_accepted() -> None:
    assert domain.signature_valid(BODY, domain.signature_of(BODY, SECRET), SECRET)


def test_signature_made_with_another_secret_is_rejected() -> None:
    assert not domain.signature_valid(BODY, domain.signature_of(BODY, "other"), SECRET)


@pytest.mark.parametrize("header", [None, ""], ids=["absent", "empty"])
def test_missing_signature_is_rejected(header: str | None) -> None:
    assert not domain.signature_valid(BODY, header, SECRET)


def test_signature_without_the_sha256_prefix_is_rejected() -> None:
    bare_hex = domain.signature_of(BODY, SECRET).removeprefix("sha256=")
    assert not domain.signature_valid(BODY, bare_hex, SECRET)


def test_sha1_signature_of_the_old_header_is_rejected() -> None:
    sha1 = "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert not domain.signature_valid(BODY, sha1, SECRET)


def test_signature_of_a_tampered_body_is_rejected() -> None:
    header = domain.signature_of(BODY, SECRET)
    tampered = BODY.replace(b'"hi"', b'"ho"')
    assert tampered != BODY
    assert not domain.signature_valid(tampered, header, SECRET)


def test_signature_covers_the_raw_bytes_not_the_reserialised_json() -> None:
    # Meta signs the bytes it sent (escaped unicode, its own spacing); re-encoding breaks it.
    raw = b'{"entry": [],  "object": "whatsapp_business_account", "x": "\\u00e9"}'
    header = domain.signature_of(raw, SECRET)
    assert domain.signature_valid(raw, header, SECRET)
    assert not domain.signature_valid(json.dumps(json.loads(raw)).encode(), header, SECRET)


@pytest.mark.parametrize(
    "header",
    ["sha256=\u00e9" + "0" * 63, "sha256=" + "\u00e9" * 64, "\u00e9sha256="],
    ids=["one-non-ascii", "all-non-ascii", "non-ascii-prefix"],
)
def test_signature_header_with_non_ascii_characters_is_rejected_not_crashing(header: str) -> None:
    # a header decoded as latin-1 with a non-ASCII byte is a 401, not a 500
    assert domain.signature_valid(BODY, header, SECRET) is False


def test_signed_builder_sends_headers_that_the_check_accepts() -> None:
    body, headers = meta.signed(meta.text_webhook(NUMBER, WA_ID, "hi"), SECRET)
    assert headers["Content-Type"] == "application/json"
    assert domain.signature_valid(body, headers["X-Hub-Signature-256"], SECRET)


def test_signed_builder_keeps_raw_bytes_as_given() -> None:
    raw = b'{"entry":[]}'
    body, headers = meta.signed(raw, SECRET)
    assert body is raw
    assert headers["X-Hub-Signature-256"] == domain.signature_of(raw, SECRET)


# -- lead tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "token"),
    [
        (WA_ID, WA_ID),
        (BSUID, "US_13491208655302741918"),
        ("US.ENT.11815799212886844830", "US_ENT_11815799212886844830"),
        ("a b*c>d", "a_b_c_d"),
    ],
    ids=["wa_id", "bsuid", "parent-bsuid", "subject-wildcards"],
)
def test_lead_token_is_a_valid_subject_token(raw: str, token: str) -> None:
    assert domain.lead_token(raw) == token
    assert LEAD_ID.validate_python(token) == token


def test_lead_token_of_64_characters_is_kept_whole() -> None:
    assert domain.lead_token("9" * 64) == "9" * 64


def test_long_lead_token_keeps_a_prefix_and_a_hash_of_the_whole_id() -> None:
    raw = "9" * 100
    token = domain.lead_token(raw)
    assert token == "9" * 47 + "_" + hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert len(token) == 64
    LEAD_ID.validate_python(token)


def test_long_lead_token_is_stable_across_calls() -> None:
    raw = "BR." + "7" * 120
    assert domain.lead_token(raw) == domain.lead_token(raw)


def test_empty_sender_is_malformed() -> None:
    with pytest.raises(MalformedWebhookError):
        domain.lead_token("")


def test_distinct_long_bsuids_stay_distinct_leads() -> None:
    # BSUIDs are 'CC.' + up to 128 alphanumerics: a shared 61-character prefix is not one lead
    prefix = "BR." + "1" * 70
    first, second = domain.lead_token(prefix + "A"), domain.lead_token(prefix + "B")
    assert first != second
    assert first[:48] == second[:48] == "BR_" + "1" * 44 + "_"


def test_long_ids_differing_only_in_a_cleaned_character_stay_distinct() -> None:
    # the hash is of the raw id, so '.' and '_' at the same place do not merge two long ids
    assert domain.lead_token("US." + "1" * 70) != domain.lead_token("US_" + "1" * 70)


# -- one contract message per inbound message, by type ---------------------------------------

LOCATION = {
    "address": "1 Hacker Way, Menlo Park, CA 94025",
    "latitude": 37.483307,
    "longitude": -122.148981,
    "name": "Meta Headquarters",
    "url": "https://meta.com",
}
VCARD_CONTACT = {
    "addresses": [{"city": "Menlo Park", "country_code": "US", "type": "WORK"}],
    "birthday": "1999-01-23",
    "emails": [{"email": "bjohnson@whatsapp.com", "type": "WORK"}],
    "name": {"first_name": "Barbara", "formatted_name": "Barbara J. Johnson"},
    "org": {"company": "Meta", "department": "Sales"},
    "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME", "wa_id": "19405551234"}],
    "urls": [{"url": "https://www.meta.com", "type": "WORK"}],
}
UNSUPPORTED_ERROR = {
    "code": 131051,
    "title": "Message type unknown",
    "message": "Message type unknown",
    "error_data": {"details": "Message type is currently not supported."},
}

CONTENT_CASES = [
    pytest.param(
        inbound("text", {"body": "Does it come in another color?"}),
        TextContent(body="Does it come in another color?"),
        id="text",
    ),
    pytest.param(
        inbound(
            "image",
            {"caption": "this one", "mime_type": "image/jpeg", "sha256": "Ym9v=", "id": "147953"},
        ),
        MediaContent(
            kind="image",
            media_id="147953",
            mime_type="image/jpeg",
            sha256="Ym9v=",
            caption="this one",
        ),
        id="image",
    ),
    pytest.param(
        inbound(
            "audio",
            {"mime_type": "audio/ogg; codecs=opus", "sha256": "c2hh=", "id": "2090", "voice": True},
        ),
        MediaContent(
            kind="audio",
            media_id="2090",
            mime_type="audio/ogg; codecs=opus",
            sha256="c2hh=",
            voice=True,
        ),
        id="voice-note",
    ),
    pytest.param(
        inbound("audio", {"mime_type": "audio/mpeg", "sha256": "c2hh=", "id": "2091"}),
        MediaContent(kind="audio", media_id="2091", mime_type="audio/mpeg", sha256="c2hh="),
        id="audio-file",
    ),
    pytest.param(
        inbound(
            "video", {"caption": "demo", "mime_type": "video/mp4", "sha256": "dg==", "id": "v1"}
        ),
        MediaContent(
            kind="video", media_id="v1", mime_type="video/mp4", sha256="dg==", caption="demo"
        ),
        id="video",
    ),
    pytest.param(
        inbound(
            "document",
            {
                "caption": "Lucky Shrub Invoice",
                "filename": "lucky-shrub-invoice.pdf",
                "mime_type": "application/pdf",
                "sha256": "ZG9j",
                "id": "d1",
            },
        ),
        MediaContent(
            kind="document",
            media_id="d1",
            mime_type="application/pdf",
            sha256="ZG9j",
            caption="Lucky Shrub Invoice",
            filename="lucky-shrub-invoice.pdf",
        ),
        id="document",
    ),
    pytest.param(
        inbound(
            "sticker", {"mime_type": "image/webp", "sha256": "c3Q=", "id": "s1", "animated": True}
        ),
        MediaContent(
            kind="sticker", media_id="s1", mime_type="image/webp", sha256="c3Q=", animated=True
        ),
        id="animated-sticker",
    ),
    pytest.param(
        inbound(
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "change-button", "title": "Change"}},
        ),
        InteractiveReplyContent(kind="button_reply", reply_id="change-button", title="Change"),
        id="interactive-button-reply",
    ),
    pytest.param(
        inbound(
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {
                    "id": "priority_express",
                    "title": "Priority Mail Express",
                    "description": "Next Day to 2 Days",
                },
            },
        ),
        InteractiveReplyContent(
            kind="list_reply",
            reply_id="priority_express",
            title="Priority Mail Express",
            description="Next Day to 2 Days",
        ),
        id="interactive-list-reply",
    ),
    pytest.param(
        inbound(
            "button",
            {"payload": "Unsubscribe from Promos", "text": "Unsubscribe from Promos"},
            context={"from": "15550783881", "id": OUR_WAMID},
        ),
        ButtonContent(payload="Unsubscribe from Promos", text="Unsubscribe from Promos"),
        id="template-quick-reply-button",
    ),
    pytest.param(inbound("location", LOCATION), LocationContent(**LOCATION), id="location"),
    pytest.param(
        inbound("location", {"latitude": 37.48, "longitude": -122.14}),
        LocationContent(latitude=37.48, longitude=-122.14),
        id="location-pin-only",
    ),
    pytest.param(
        inbound("contacts", contacts=[VCARD_CONTACT]),
        ContactsContent(contacts=[VCARD_CONTACT]),
        id="contacts",
    ),
    pytest.param(
        inbound("reaction", {"message_id": OUR_WAMID, "emoji": "\U0001f44d"}),
        ReactionContent(message_id=OUR_WAMID, emoji="\U0001f44d"),
        id="reaction",
    ),
    pytest.param(
        inbound("reaction", {"message_id": OUR_WAMID}),
        ReactionContent(message_id=OUR_WAMID, emoji=None),
        id="reaction-removed-emoji-omitted",
    ),
    pytest.param(
        inbound("reaction", {"message_id": OUR_WAMID, "emoji": ""}),
        ReactionContent(message_id=OUR_WAMID, emoji=None),
        id="reaction-removed-emoji-empty",
    ),
    pytest.param(
        inbound("unsupported", {"type": "edit"}, errors=[UNSUPPORTED_ERROR]),
        UnsupportedContent(errors=[UNSUPPORTED_ERROR], type="edit"),
        id="unsupported-edit",
    ),
    pytest.param(
        inbound("unsupported", errors=[UNSUPPORTED_ERROR]),
        UnsupportedContent(errors=[UNSUPPORTED_ERROR]),
        id="unsupported-without-body",
    ),
]


@pytest.mark.parametrize(("message", "content"), CONTENT_CASES)
def test_each_inbound_type_becomes_its_content(message: dict[str, Any], content: Any) -> None:
    assert domain.parse_content(message) == content
    received = only_message(message)
    assert received.content == content
    assert received.wamid == WAMID
    assert received.correlation_id == WAMID
    assert received.tenant_id == TENANT
    assert received.phone_number_id == NUMBER
    assert received.lead == WA_ID
    assert received.lead_name == "Sheena Nelson"
    assert received.wa_timestamp == TS_AT


@pytest.mark.parametrize(("message", "content"), CONTENT_CASES)
def test_each_content_survives_the_bus(message: dict[str, Any], content: Any) -> None:
    received = only_message(message)
    again = WhatsAppMessageReceived.from_bytes(received.to_bytes())
    assert again.content == content
    assert again == received


@pytest.mark.parametrize(
    "message",
    [
        inbound("order", {"catalog_id": "c1", "product_items": [{"product_retailer_id": "p"}]}),
        inbound("system", {"body": "User changed number", "type": "user_changed_number"}),
        inbound("request_welcome"),
        inbound("interactive", {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}),
        inbound("a_type_meta_adds_next_year", {"whatever": [1, 2, 3]}),
    ],
    ids=["order", "system", "request-welcome", "flow-nfm-reply", "future-type"],
)
def test_unknown_type_is_kept_raw(message: dict[str, Any]) -> None:
    received = only_message(message)
    assert received.content == UnknownContent(type=message["type"], raw=message)


def test_message_without_type_is_kept_raw_as_missing() -> None:
    message = {"from": WA_ID, "id": WAMID, "timestamp": TS}
    assert only_message(message).content == UnknownContent(type="missing", raw=message)


@pytest.mark.parametrize(
    "message",
    [
        inbound("image", {"mime_type": "image/jpeg"}),
        inbound("document", "not-an-object"),
        inbound("interactive", {"type": "button_reply", "button_reply": {"title": "no id"}}),
        inbound("interactive", {"type": "list_reply", "list_reply": ["a", "list"]}),
        inbound("reaction", {"emoji": "\U0001f44d"}),
        inbound("location", {"longitude": 1.0}),
        inbound("location", {"latitude": "north", "longitude": 1.0}),
        inbound("contacts", contacts="Barbara"),
        inbound("text", "hello, body as a bare string"),
        inbound("text", ["hello"]),
        inbound("button", "Unsubscribe"),
        inbound("unsupported", "edit"),
    ],
    ids=[
        "image-without-id",
        "document-not-object",
        "button-reply-without-id",
        "list-reply-not-object",
        "reaction-without-message-id",
        "location-without-latitude",
        "location-latitude-not-number",
        "contacts-not-list",
        "text-body-string",
        "text-body-list",
        "button-body-string",
        "unsupported-body-string",
    ],
)
def test_known_type_in_unknown_shape_is_kept_raw(message: dict[str, Any]) -> None:
    # text and button bodies that are not objects are kept, not read as empty content
    assert domain.parse_content(message) == UnknownContent(type=message["type"], raw=message)
    assert only_message(message).content == UnknownContent(type=message["type"], raw=message)


def test_contacts_keep_the_objects_of_the_list_and_drop_the_rest() -> None:
    message = inbound("contacts", contacts=[VCARD_CONTACT, "junk", 7])
    assert only_message(message).content == ContactsContent(contacts=[VCARD_CONTACT])


@pytest.mark.parametrize("contacts", [[1, 2], ["Barbara"], []], ids=["numbers", "strings", "empty"])
def test_contacts_list_without_any_contact_is_kept_raw(contacts: list[Any]) -> None:
    message = inbound("contacts", contacts=contacts)
    assert domain.parse_content(message) == UnknownContent(type="contacts", raw=message)


@pytest.mark.parametrize(
    ("message", "content"),
    [
        (inbound("unsupported", {"type": "edit"}, errors=5), UnsupportedContent(type="edit")),
        (
            inbound("unsupported", {"type": "edit"}, errors=[UNSUPPORTED_ERROR, "x", 3]),
            UnsupportedContent(errors=[UNSUPPORTED_ERROR], type="edit"),
        ),
        (inbound("unsupported", {"type": ["edit"]}), UnsupportedContent()),
        (inbound("unsupported", {"type": 7}), UnsupportedContent()),
    ],
    ids=["errors-not-list", "errors-not-objects", "type-list", "type-number"],
)
def test_unsupported_with_odd_optional_slots_is_still_unsupported(
    message: dict[str, Any], content: UnsupportedContent
) -> None:
    assert only_message(message).content == content


# -- context: replies and forwards ----------------------------------------------------------


def test_reply_context_keeps_who_sent_the_replied_message() -> None:
    message = inbound("text", {"body": "yes"}, context={"from": "15550783881", "id": OUR_WAMID})
    context = only_message(message).context
    assert context is not None
    assert context.from_ == "15550783881"
    assert not context.forwarded and not context.frequently_forwarded


def test_reply_context_keeps_the_replied_to_wamid() -> None:
    message = inbound("text", {"body": "yes"}, context={"from": "15550783881", "id": OUR_WAMID})
    context = only_message(message).context
    assert context is not None
    assert context.message_id == OUR_WAMID


@pytest.mark.parametrize(
    ("context", "forwarded", "frequently"),
    [({"forwarded": True}, True, False), ({"frequently_forwarded": True}, False, True)],
    ids=["forwarded", "frequently-forwarded"],
)
def test_forward_flags_are_kept(context: dict[str, Any], forwarded: bool, frequently: bool) -> None:
    parsed = only_message(inbound("text", {"body": "fwd"}, context=context)).context
    assert parsed is not None
    assert (parsed.forwarded, parsed.frequently_forwarded) == (forwarded, frequently)
    assert parsed.from_ is None


@pytest.mark.parametrize("context", [None, "not-an-object"], ids=["absent", "not-object"])
def test_no_usable_context_means_none(context: Any) -> None:
    message = inbound("text", {"body": "hi"})
    if context is not None:
        message["context"] = context
    assert only_message(message).context is None


def test_reply_context_survives_the_bus() -> None:
    message = inbound("text", {"body": "yes"}, context={"from": "15550783881", "id": OUR_WAMID})
    received = only_message(message)
    assert json.loads(received.to_bytes())["context"] == {
        "id": OUR_WAMID,
        "from": "15550783881",
        "forwarded": False,
        "frequently_forwarded": False,
    }
    again = WhatsAppMessageReceived.from_bytes(received.to_bytes())
    assert again.context == received.context
    assert again.context is not None
    assert (again.context.message_id, again.context.from_) == (OUR_WAMID, "15550783881")


@pytest.mark.parametrize(
    "data",
    [
        {"id": OUR_WAMID, "from": WA_ID},
        {"message_id": OUR_WAMID, "from_": WA_ID},
    ],
    ids=["meta-keys", "field-names"],
)
def test_message_context_reads_meta_keys_and_its_field_names(data: dict[str, Any]) -> None:
    context = MessageContext.model_validate(data)
    assert (context.message_id, context.from_) == (OUR_WAMID, WA_ID)
    assert context.model_dump() == {
        "id": OUR_WAMID,
        "from": WA_ID,
        "forwarded": False,
        "frequently_forwarded": False,
    }


@pytest.mark.parametrize(
    "context",
    [{"forwarded": []}, {"frequently_forwarded": {"x": 1}}, {"id": 5}, {"from": ["x"]}],
    ids=["forwarded-list", "frequently-forwarded-object", "id-number", "from-list"],
)
def test_unreadable_context_never_costs_the_message(context: dict[str, Any]) -> None:
    received = only_message(inbound("text", {"body": "hi"}, context=context))
    assert received.content == TextContent(body="hi")
    assert received.context is None or not (
        received.context.forwarded or received.context.frequently_forwarded
    )


# -- senders: wa_id and business-scoped user ids --------------------------------------------


def test_sender_by_phone_is_named_from_its_contact() -> None:
    received = only_message(inbound("text", {"body": "hi"}))
    assert (received.lead, received.lead_name) == (WA_ID, "Sheena Nelson")


def test_sender_with_only_a_business_scoped_user_id() -> None:
    message = inbound("text", {"body": "hi"}, sender=None, from_user_id=BSUID)
    contacts = [{"profile": {"name": "Sheena", "username": "@sheena"}, "user_id": BSUID}]
    received = only_message(message, contacts=contacts)
    assert received.lead == "US_13491208655302741918"
    assert received.lead_name == "Sheena"
    assert received.subject() == f"wa.in.{TENANT}.US_13491208655302741918.message"


def test_sender_with_phone_and_user_id_is_keyed_by_phone() -> None:
    message = inbound("text", {"body": "hi"}, from_user_id=BSUID)
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": WA_ID, "user_id": BSUID}]
    received = only_message(message, contacts=contacts)
    assert (received.lead, received.lead_name) == (WA_ID, "Sheena")


@pytest.mark.parametrize(
    "contacts",
    [[], [{"profile": {"name": "Someone Else"}, "wa_id": "447700900000"}], [{"wa_id": WA_ID}]],
    ids=["no-contacts", "other-contact", "contact-without-profile"],
)
def test_sender_without_a_named_contact_has_no_name(contacts: list[dict[str, Any]]) -> None:
    assert only_message(inbound("text", {"body": "hi"}), contacts=contacts).lead_name is None


@pytest.mark.parametrize(
    "sender",
    [{}, {"from": ""}, {"from": 16505551234}, {"from": None, "from_user_id": ""}],
    ids=["absent", "empty", "number", "empty-user-id"],
)
def test_message_without_any_sender_is_rejected_and_the_batch_goes_on(
    sender: dict[str, Any],
) -> None:
    nameless = inbound("text", {"body": "hi"}, wamid="wamid.nobody", sender=None) | sender
    parsed = split(envelope(change(value([_text(1), nameless, _text(2)]))))
    assert [m.wamid for m in parsed.messages] == ["wamid.in1", "wamid.in2"]
    assert [r.item for r in parsed.rejected] == [nameless]
    assert "sender" in parsed.rejected[0].reason


# -- timestamps -------------------------------------------------------------------------------


def test_timestamp_is_meta_unix_seconds_in_utc() -> None:
    assert only_message(inbound("text", {"body": "hi"})).wa_timestamp == TS_AT


@pytest.mark.parametrize("timestamp", [None, "yesterday", [1]], ids=["absent", "text", "list"])
def test_unreadable_timestamp_falls_back_to_now(timestamp: Any) -> None:
    message = inbound("text", {"body": "hi"})
    if timestamp is None:
        del message["timestamp"]
    else:
        message["timestamp"] = timestamp
    before = datetime.now(UTC)
    received = only_message(message)
    assert before <= received.wa_timestamp <= datetime.now(UTC)


OUT_OF_RANGE_TIMESTAMPS = ["99999999999999999999", 10**20, -(10**20), "9" * 5000, 1e300]


@pytest.mark.parametrize("timestamp", OUT_OF_RANGE_TIMESTAMPS)
def test_out_of_range_timestamp_falls_back_to_now(timestamp: Any) -> None:
    before = datetime.now(UTC)
    received = only_message(inbound("text", {"body": "hi"}, timestamp=timestamp))
    assert received.content == TextContent(body="hi")
    assert before <= received.wa_timestamp <= datetime.now(UTC)


@pytest.mark.parametrize("timestamp", OUT_OF_RANGE_TIMESTAMPS)
def test_out_of_range_status_timestamp_falls_back_to_now(timestamp: Any) -> None:
    before = datetime.now(UTC)
    received = only_status(status("read", timestamp=timestamp))
    assert received.status == "read"
    assert before <= received.wa_timestamp <= datetime.now(UTC)


# -- statuses -------------------------------------------------------------------------------

CONVERSATION = {
    "id": "a75d17ad06104c51166f948319b03c6a",
    "expiration_timestamp": "1750943820",
    "origin": {"type": "service"},
}
PRICING = {"billable": False, "pricing_model": "PMP", "category": "service", "type": "free"}


@pytest.mark.parametrize("state", ["sent", "delivered", "read", "played", "deleted"])
def test_status_keeps_state_conversation_and_pricing(state: str) -> None:
    received = only_status(status(state, conversation=CONVERSATION, pricing=PRICING))
    assert received.status == state
    assert received.wamid == OUR_WAMID
    assert received.correlation_id == OUR_WAMID
    assert received.lead == WA_ID
    assert received.phone_number_id == NUMBER
    assert received.wa_timestamp == TS_AT
    assert received.conversation == CONVERSATION
    assert received.pricing == PRICING
    assert received.errors == []
    assert received.subject() == f"wa.in.{TENANT}.{WA_ID}.status"


def test_failed_status_keeps_its_errors() -> None:
    error = {
        "code": 131049,
        "title": "This message was not delivered to maintain healthy ecosystem engagement.",
        "message": "This message was not delivered to maintain healthy ecosystem engagement.",
        "error_data": {"details": "In order to maintain a healthy ecosystem engagement..."},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
    received = only_status(status("failed", errors=[error, "not-an-object"]))
    assert received.status == "failed"
    assert received.errors == [error]
    assert received.conversation is None and received.pricing is None


def test_status_meta_adds_later_is_unknown() -> None:
    assert only_status(status("warning")).status == "unknown"


def test_status_for_a_business_scoped_user_id() -> None:
    state = status("delivered", recipient_user_id=BSUID)
    del state["recipient_id"]
    assert only_status(state).lead == "US_13491208655302741918"


def test_status_msg_id_is_wamid_and_status() -> None:
    assert domain.status_msg_id(only_status(status("read"))) == f"{OUR_WAMID}:read"


def test_each_status_of_a_message_has_its_own_msg_id_and_redeliveries_share_it() -> None:
    states = ["sent", "delivered", "read", "sent"]
    parsed = split(envelope(change(value(statuses=[status(s) for s in states]))))
    ids = [domain.status_msg_id(s) for s in parsed.statuses]
    assert ids[0] == ids[3]
    assert len(set(ids)) == 3


# -- batches, routing and system errors ------------------------------------------------------


def _text(n: int) -> dict[str, Any]:
    return inbound("text", {"body": f"message {n}"}, wamid=f"wamid.in{n}")


def _sent(n: int) -> dict[str, Any]:
    return status("sent", wamid=f"wamid.out{n}")


def test_batch_of_entries_and_changes_is_split_per_message_and_status() -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba-1",
                "changes": [
                    change(value([_text(1), _text(2)], [_sent(1)])),
                    change(value([_text(3)], number=OTHER_NUMBER)),
                ],
            },
            {
                "id": "waba-2",
                "changes": [
                    change(value([_text(4), _text(5)], [_sent(2), _sent(3)])),
                    change(value([_text(6)], [_sent(4)], number=FOREIGN_NUMBER)),
                    change({"event": "APPROVED"}, field="message_template_status_update"),
                ],
            },
        ],
    }
    parsed = split(payload)
    assert [m.wamid for m in parsed.messages] == [f"wamid.in{n}" for n in (1, 2, 3, 4, 5)]
    assert [m.phone_number_id for m in parsed.messages] == [
        NUMBER,
        NUMBER,
        OTHER_NUMBER,
        NUMBER,
        NUMBER,
    ]
    assert [s.wamid for s in parsed.statuses] == [f"wamid.out{n}" for n in (1, 2, 3)]
    assert parsed.unrouted == [Unrouted(FOREIGN_NUMBER, "unknown_phone_number", 2)]
    assert parsed.ignored_fields == ["message_template_status_update"]
    assert parsed.errors == []


def test_many_messages_and_statuses_in_one_change() -> None:
    parsed = split(
        envelope(change(value([_text(n) for n in range(50)], [_sent(n) for n in range(30)])))
    )
    assert len(parsed.messages) == 50
    assert len(parsed.statuses) == 30
    assert len({m.wamid for m in parsed.messages} | {s.wamid for s in parsed.statuses}) == 80


def test_unknown_phone_number_is_unrouted_not_published() -> None:
    parsed = split(envelope(change(value([_text(1)], [_sent(1)], number=FOREIGN_NUMBER))))
    assert parsed.messages == [] and parsed.statuses == []
    assert parsed.unrouted == [Unrouted(FOREIGN_NUMBER, "unknown_phone_number", 2)]


def test_missing_phone_number_is_unrouted_as_missing() -> None:
    parsed = split(envelope(change(value([_text(1)], number=None))))
    assert parsed.unrouted == [Unrouted("(missing)", "unknown_phone_number", 1)]


def test_unknown_phone_number_with_nothing_to_route_is_not_reported() -> None:
    assert split(envelope(change(value(number=FOREIGN_NUMBER)))).unrouted == []


def test_system_level_errors_are_collected() -> None:
    error = {
        "code": 130472,
        "title": "User's number is part of an experiment",
        "message": "User's number is part of an experiment",
        "error_data": {"details": "Failed to send message because this user's phone number..."},
    }
    parsed = split(envelope(change(value(errors=[error, "noise", 7]))))
    assert parsed.errors == [error]
    assert parsed.messages == [] and parsed.statuses == [] and parsed.unrouted == []


@pytest.mark.parametrize(
    "field",
    ["account_update", "message_template_status_update", "smb_message_echoes", "history"],
)
def test_changes_of_other_fields_are_ignored(field: str) -> None:
    parsed = split(envelope(change(value([_text(1)]), field=field)))
    assert parsed.messages == []
    assert parsed.ignored_fields == [field]


def test_change_without_field_is_read_as_messages() -> None:
    assert len(split(envelope({"value": value([_text(1)])})).messages) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "whatsapp_business_account", "entry": []},
        {"object": "whatsapp_business_account", "entry": [{"id": "waba"}]},
        envelope(),
        envelope(change(value([]))),
    ],
    ids=["no-entries", "entry-without-changes", "no-changes", "empty-messages"],
)
def test_empty_webhooks_yield_nothing(payload: dict[str, Any]) -> None:
    assert split(payload) == ParsedWebhook()


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "entry",
        7,
        {},
        {"object": "whatsapp_business_account"},
        {"entry": {"id": "waba"}},
        {"entry": None},
        {"entry": "waba"},
        [{"object": "whatsapp_business_account", "entry": []}],
    ],
    ids=[
        "null",
        "list",
        "string",
        "number",
        "no-entry",
        "object-only",
        "entry-object",
        "entry-null",
        "entry-string",
        "webhook-in-a-list",
    ],
)
def test_bodies_that_are_not_webhooks_are_malformed(payload: Any) -> None:
    with pytest.raises(MalformedWebhookError, match="entry"):
        split(payload)


# -- one unreadable update is set aside; the rest of the batch goes on ---------------------


def _good_entry(*first: Any) -> dict[str, Any]:
    """An entry whose last change holds one good message and one good status."""
    return {"id": "waba-good", "changes": [*first, change(value([_text(1)], [_sent(1)]))]}


def _batch(*entries: Any) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def _among_good_updates(bad_message: Any = None, bad_status: Any = None) -> dict[str, Any]:
    messages = [_text(1)] if bad_message is None else [bad_message, _text(1)]
    statuses = [_sent(1)] if bad_status is None else [_sent(1), bad_status]
    return envelope(change(value(messages, statuses)))


def _rejected_case(case_id: str, bad: Any, payload: dict[str, Any], *words: str) -> Any:
    return pytest.param(payload, bad, words, id=case_id)


# Rejected items are checked by identity: each bad item is one object, used once.
ENTRY_STRING = "waba-entry-as-a-string"
CHANGE_LIST = ["not", "a", "change"]
MESSAGE_STRING = "message-as-a-string"
BAD_ENTRY = {"id": "waba", "changes": {"value": {}}}
NULL_CHANGES_ENTRY = {"id": "waba", "changes": None}
CHANGE_WITHOUT_VALUE = {"field": "messages"}
VALUE_NOT_OBJECT = {"field": "messages", "value": "text"}
VALUE_NULL = {"field": "messages", "value": None}
MESSAGES_NOT_LIST = value() | {"messages": {"id": WAMID}}
STATUSES_NOT_LIST = value() | {"statuses": "sent"}
NO_ID_MESSAGE = {"from": WA_ID, "timestamp": TS, "type": "text", "text": {"body": "hi"}}
NUMBER_ID_MESSAGE = inbound("text", {"body": "hi"}) | {"id": 7}
MESSAGE_LIST = [WAMID]
NO_SENDER_MESSAGE = inbound("text", {"body": "hi"}, wamid="wamid.nobody", sender=None)
NO_ID_STATUS = {"status": "read", "timestamp": TS, "recipient_id": WA_ID}
NO_RECIPIENT_STATUS = {"id": "wamid.out9", "status": "read", "timestamp": TS}

REJECTED_CASES = [
    _rejected_case("entry-not-object", ENTRY_STRING, _batch(ENTRY_STRING, _good_entry()), "entry"),
    _rejected_case("entry-null", None, _batch(None, _good_entry()), "entry"),
    _rejected_case("changes-not-list", BAD_ENTRY, _batch(BAD_ENTRY, _good_entry()), "changes"),
    _rejected_case(
        "changes-null", NULL_CHANGES_ENTRY, _batch(_good_entry(), NULL_CHANGES_ENTRY), "changes"
    ),
    _rejected_case("change-not-object", CHANGE_LIST, _batch(_good_entry(CHANGE_LIST)), "change"),
    _rejected_case(
        "change-without-value",
        CHANGE_WITHOUT_VALUE,
        _batch(_good_entry(CHANGE_WITHOUT_VALUE)),
        "value",
    ),
    _rejected_case(
        "value-not-object", VALUE_NOT_OBJECT, _batch(_good_entry(VALUE_NOT_OBJECT)), "value"
    ),
    _rejected_case("value-null", VALUE_NULL, _batch(_good_entry(VALUE_NULL)), "value"),
    _rejected_case(
        "messages-not-list",
        MESSAGES_NOT_LIST,
        _batch(_good_entry(change(MESSAGES_NOT_LIST))),
        "messages",
        "list",
    ),
    _rejected_case(
        "statuses-not-list",
        STATUSES_NOT_LIST,
        _batch(_good_entry(change(STATUSES_NOT_LIST))),
        "statuses",
        "list",
    ),
    _rejected_case(
        "message-without-id",
        NO_ID_MESSAGE,
        _among_good_updates(bad_message=NO_ID_MESSAGE),
        "message",
        "id",
    ),
    _rejected_case(
        "message-id-not-string",
        NUMBER_ID_MESSAGE,
        _among_good_updates(bad_message=NUMBER_ID_MESSAGE),
        "message",
        "id",
    ),
    _rejected_case(
        "message-not-object",
        MESSAGE_STRING,
        _among_good_updates(bad_message=MESSAGE_STRING),
        "message",
    ),
    _rejected_case(
        "message-list", MESSAGE_LIST, _among_good_updates(bad_message=MESSAGE_LIST), "message"
    ),
    _rejected_case(
        "message-without-sender",
        NO_SENDER_MESSAGE,
        _among_good_updates(bad_message=NO_SENDER_MESSAGE),
        "message",
        "sender",
    ),
    _rejected_case(
        "status-without-id",
        NO_ID_STATUS,
        _among_good_updates(bad_status=NO_ID_STATUS),
        "status",
        "id",
    ),
    _rejected_case("status-not-object", 7, _among_good_updates(bad_status=7), "status"),
    _rejected_case(
        "status-without-recipient",
        NO_RECIPIENT_STATUS,
        _among_good_updates(bad_status=NO_RECIPIENT_STATUS),
        "status",
        "recipient",
    ),
]


@pytest.mark.parametrize(("payload", "bad", "words"), REJECTED_CASES)
def test_unreadable_update_is_set_aside_and_the_batch_goes_on(
    payload: dict[str, Any], bad: Any, words: tuple[str, ...]
) -> None:
    parsed = split(payload)
    assert [m.wamid for m in parsed.messages] == ["wamid.in1"]
    assert [m.content for m in parsed.messages] == [TextContent(body="message 1")]
    assert [s.wamid for s in parsed.statuses] == ["wamid.out1"]
    assert len(parsed.rejected) == 1
    rejected = parsed.rejected[0]
    assert rejected.item is bad  # the very update, as Meta sent it, for the dead letter
    assert all(word in rejected.reason for word in words), rejected.reason
    assert parsed.unrouted == [] and parsed.errors == [] and parsed.ignored_fields == []


def test_every_unreadable_update_of_a_batch_is_set_aside_in_order() -> None:
    payload = _batch(
        "bad-entry",
        _good_entry("bad-change"),
        {
            "id": "waba-2",
            "changes": [
                change(value([NO_ID_MESSAGE, _text(2)], [NO_RECIPIENT_STATUS, _sent(2)])),
                change(STATUSES_NOT_LIST),
            ],
        },
    )
    parsed = split(payload)
    assert [m.wamid for m in parsed.messages] == ["wamid.in1", "wamid.in2"]
    assert [s.wamid for s in parsed.statuses] == ["wamid.out1", "wamid.out2"]
    assert [r.item for r in parsed.rejected] == [
        "bad-entry",
        "bad-change",
        NO_ID_MESSAGE,
        NO_RECIPIENT_STATUS,
        STATUSES_NOT_LIST,
    ]


@pytest.mark.parametrize(("payload", "bad", "words"), REJECTED_CASES)
def test_rejected_update_can_be_dead_lettered_as_json(
    payload: dict[str, Any], bad: Any, words: tuple[str, ...]
) -> None:
    # the service dead-letters json.dumps(item) with reason 'unreadable_update'
    (rejected,) = split(payload).rejected
    assert json.loads(json.dumps(rejected.item)) == bad
    assert isinstance(rejected.reason, str) and rejected.reason


def test_messages_without_a_phone_number_are_unrouted_not_rejected() -> None:
    parsed = split(envelope(change(value([NO_ID_MESSAGE, _text(1)], number=FOREIGN_NUMBER))))
    assert parsed.unrouted == [Unrouted(FOREIGN_NUMBER, "unknown_phone_number", 2)]
    assert parsed.rejected == [] and parsed.messages == []


@pytest.mark.parametrize(
    ("payload", "bad"),
    [
        (
            _among_good_updates(bad_message=inbound("text", {"body": "hi"}, wamid="")),
            inbound("text", {"body": "hi"}, wamid=""),
        ),
        (
            _among_good_updates(bad_status=status("read", wamid="")),
            status("read", wamid=""),
        ),
    ],
    ids=["message", "status"],
)
def test_update_with_an_empty_id_is_rejected(payload: dict[str, Any], bad: Any) -> None:
    parsed = split(payload)
    assert [r.item for r in parsed.rejected] == [bad]
    assert "id" in parsed.rejected[0].reason
    assert [m.wamid for m in parsed.messages] == ["wamid.in1"]
    assert [s.wamid for s in parsed.statuses] == ["wamid.out1"]


@pytest.mark.parametrize(
    "payload",
    [
        meta.text_webhook(NUMBER, WA_ID, "cut emoji \ud83d", WAMID),
        meta.text_webhook(NUMBER, WA_ID, "hi", WAMID, name="Ana \ud83d"),
        envelope(change(value(statuses=[status("failed", errors=[{"title": "\ud83d"}])]))),
    ],
    ids=["text-body", "contact-name", "status-error"],
)
def test_update_with_a_lone_surrogate_survives_the_bus_or_is_rejected(
    payload: dict[str, Any],
) -> None:
    raw = json.dumps(payload).encode()
    assert raw.isascii()  # valid JSON, signed by Meta like any other body
    parsed = split(json.loads(raw))
    for received in [*parsed.messages, *parsed.statuses]:
        assert type(received).from_bytes(received.to_bytes()) == received
    assert len(parsed.messages) + len(parsed.statuses) + len(parsed.rejected) == 1


# -- oddly typed optional slots are ignored; the update is kept -----------------------------


@pytest.mark.parametrize(
    "metadata", [["not", "an", "object"], "meta", None, {"phone_number_id": [NUMBER]}]
)
def test_metadata_without_a_readable_number_is_unrouted_as_missing(metadata: Any) -> None:
    parsed = split(envelope(change(value([_text(1)], [_sent(1)]) | {"metadata": metadata})))
    assert parsed.unrouted == [Unrouted("(missing)", "unknown_phone_number", 2)]
    assert parsed.messages == [] and parsed.statuses == [] and parsed.rejected == []


def test_phone_number_id_as_a_json_number_is_routed() -> None:
    metadata = {"phone_number_id": int(NUMBER)}
    parsed = split(envelope(change(value([_text(1)]) | {"metadata": metadata})))
    assert [m.phone_number_id for m in parsed.messages] == [NUMBER]


@pytest.mark.parametrize("errors", [5, "error", {"code": 1}, None, True])
def test_system_errors_that_are_not_a_list_are_ignored(errors: Any) -> None:
    parsed = split(envelope(change(value([_text(1)]) | {"errors": errors})))
    assert parsed.errors == []
    assert [m.wamid for m in parsed.messages] == ["wamid.in1"]
    assert parsed.rejected == []


@pytest.mark.parametrize(
    "contacts",
    [
        [{"profile": ["x"], "wa_id": WA_ID}],
        [{"profile": {"name": 7}, "wa_id": WA_ID}],
        [{"profile": {"name": ""}, "wa_id": WA_ID}],
        [{"profile": "Sheena", "wa_id": WA_ID}],
        [{"profile": {"name": "Sheena"}, "wa_id": int(WA_ID)}],
        ["junk", None],
        "not-a-list",
        {"wa_id": WA_ID, "profile": {"name": "Sheena"}},
    ],
    ids=[
        "profile-list",
        "name-number",
        "name-empty",
        "profile-string",
        "wa-id-number",
        "contacts-not-objects",
        "contacts-string",
        "contacts-object",
    ],
)
def test_odd_contacts_leave_the_sender_unnamed(contacts: Any) -> None:
    received = only_message(_text(1), contacts=contacts)
    assert received.content == TextContent(body="message 1")
    assert received.lead == WA_ID
    assert received.lead_name is None


@pytest.mark.parametrize("kind", [["text"], {"t": "text"}, 7, None, "", True], ids=repr)
def test_message_type_that_is_not_a_string_is_kept_as_missing(kind: Any) -> None:
    message = inbound("text", {"body": "x"}) | {"type": kind}
    assert only_message(message).content == UnknownContent(type="missing", raw=message)


@pytest.mark.parametrize(
    ("extra", "conversation", "pricing", "errors"),
    [
        ({"conversation": "c1"}, None, None, []),
        ({"conversation": ["c1"]}, None, None, []),
        ({"pricing": 1}, None, None, []),
        ({"pricing": "free", "conversation": CONVERSATION}, CONVERSATION, None, []),
        ({"errors": 5}, None, None, []),
        ({"errors": {"code": 1}}, None, None, []),
    ],
    ids=[
        "conversation-string",
        "conversation-list",
        "pricing-number",
        "pricing-string",
        "errors-number",
        "errors-object",
    ],
)
def test_status_with_odd_optional_slots_is_kept(
    extra: dict[str, Any], conversation: Any, pricing: Any, errors: list[Any]
) -> None:
    received = only_status(status("failed", **extra))
    assert received.status == "failed"
    assert (received.conversation, received.pricing, received.errors) == (
        conversation,
        pricing,
        errors,
    )


@pytest.mark.parametrize("state", [7, None, True, "", "READ"], ids=repr)
def test_status_state_that_is_not_known_is_unknown(state: Any) -> None:
    assert only_status(status("sent") | {"status": state}).status == "unknown"


@pytest.mark.parametrize("state", [["read"], {"s": "read"}], ids=["list", "object"])
def test_status_state_that_is_unhashable_is_unknown(state: Any) -> None:
    assert only_status(status("sent") | {"status": state}).status == "unknown"


# -- meta.py builders --------------------------------------------------------------------------


def test_text_webhook_builder_reads_back_as_one_text_message() -> None:
    parsed = split(meta.text_webhook(NUMBER, WA_ID, "Hola", wamid=WAMID, name="Ana"))
    assert len(parsed.messages) == 1
    received = parsed.messages[0]
    assert received.content == TextContent(body="Hola")
    assert (received.wamid, received.lead, received.lead_name) == (WAMID, WA_ID, "Ana")


def test_webhook_builder_puts_each_value_in_its_own_change() -> None:
    payload = meta.webhook(
        meta.message_value(NUMBER, [meta.text_message(WA_ID, "a")]),
        meta.message_value(OTHER_NUMBER, [meta.text_message(WA_ID, "b")]),
    )
    assert payload["object"] == "whatsapp_business_account"
    assert [m.phone_number_id for m in split(payload).messages] == [NUMBER, OTHER_NUMBER]


def test_new_wamids_look_like_meta_and_differ() -> None:
    first, second = meta.new_wamid(), meta.new_wamid()
    assert first.startswith("wamid.") and second.startswith("wamid.")
    assert first != second


# -- contracts -----------------------------------------------------------------------------------


def test_lead_id_rejects_what_lead_token_exists_to_clean() -> None:
    with pytest.raises(ValidationError):
        LEAD_ID.validate_python(BSUID)
    with pytest.raises(ValidationError):
        LEAD_ID.validate_python("")
    with pytest.raises(ValidationError):
        LEAD_ID.validate_python("9" * 65)


def test_received_message_fills_type_and_version_and_is_frozen() -> None:
    received = only_message(inbound("text", {"body": "hi"}))
    assert (received.type, received.schema_version) == ("WhatsAppMessageReceived", 1)
    with pytest.raises(ValidationError):
        received.lead = "someone-else"  # type: ignore[misc]


def test_received_message_reader_ignores_fields_it_does_not_know() -> None:
    received = only_message(inbound("text", {"body": "hi"}))
    data = json.loads(received.to_bytes())
    data["added_in_a_later_version"] = {"x": 1}
    data["content"]["also_new"] = True
    assert WhatsAppMessageReceived.model_validate(data) == received


def test_content_is_chosen_by_kind() -> None:
    data = {
        "tenant_id": TENANT,
        "correlation_id": WAMID,
        "wamid": WAMID,
        "phone_number_id": NUMBER,
        "lead": WA_ID,
        "wa_timestamp": TS_AT.isoformat(),
        "content": {"kind": "button_reply", "reply_id": "yes", "title": "Yes"},
    }
    content = WhatsAppMessageReceived.model_validate(data).content
    assert content == InteractiveReplyContent(kind="button_reply", reply_id="yes", title="Yes")
    data["content"] = {"kind": "carrier_pigeon"}
    with pytest.raises(ValidationError):
        WhatsAppMessageReceived.model_validate(data)


def test_status_contract_rejects_states_it_does_not_know() -> None:
    received = only_status(status("read"))
    data = json.loads(received.to_bytes()) | {"status": "warning"}
    with pytest.raises(ValidationError):
        WhatsAppStatusReceived.model_validate(data)


def test_domain_and_contract_agree_on_statuses_and_media_kinds() -> None:
    status_literal = WhatsAppStatusReceived.model_fields["status"].annotation
    assert set(get_args(status_literal)) == domain.KNOWN_STATUSES | {"unknown"}
    media_literal = MediaContent.model_fields["kind"].annotation
    assert set(get_args(media_literal)) == set(domain.MEDIA_KINDS)


def test_message_context_reads_meta_from_key() -> None:
    assert MessageContext.model_validate({"from": WA_ID}).from_ == WA_ID


# -- outbound retries: Graph API error code -> decision ----------------------------------------


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (130429, 429),  # throughput limit
        (131056, 400),  # pair rate limit
        (131000, 500),  # something went wrong
        (131016, 503),  # service unavailable
        (1, 400),  # API unknown
        (2, 503),  # API service
        (130429, None),  # decided on the code, not the status
        (None, None),  # no answer at all: timeout, refused connection
        (None, 500),
        (None, 502),
    ],
)
def test_transient_failures_are_retried(code: int | None, http_status: int | None) -> None:
    assert domain.is_retryable(code, http_status)


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (131047, 400),  # outside the 24-hour window: retrying cannot help
        (131026, 400),  # message undeliverable
        (100, 400),  # invalid parameter
        (190, 401),  # access token expired
        (131047, 500),  # a known permanent code wins over the status
        (None, 400),
        (None, 404),
    ],
)
def test_permanent_failures_are_not_retried(code: int | None, http_status: int | None) -> None:
    assert not domain.is_retryable(code, http_status)


@pytest.mark.parametrize(
    ("code", "http_status"), [(4, 400), (80007, 400), (None, 429)], ids=["4", "80007", "429"]
)
def test_throttling_failures_are_retried(code: int | None, http_status: int | None) -> None:
    # Meta's app (4) and WABA (80007) rate limits and a bare 429 ask the caller to wait
    assert domain.is_retryable(code, http_status)


def test_generic_retry_delay_doubles_from_base_and_caps_at_a_minute() -> None:
    delays = [domain.retry_delay(131000, attempt) for attempt in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert domain.retry_delay(None, 2, base=0.5) == 1.0
    assert domain.retry_delay(domain.THROUGHPUT_LIMIT, 3) == 4.0


def test_pair_rate_limit_delay_grows_fourfold() -> None:
    delays = [domain.retry_delay(domain.PAIR_RATE_LIMIT, attempt) for attempt in range(1, 6)]
    assert all(later == 4 * earlier for earlier, later in pairwise(delays))
    assert domain.retry_delay(domain.PAIR_RATE_LIMIT, 3, base=100.0) == delays[2]


def test_first_pair_rate_limit_retry_waits_one_second() -> None:
    # Meta: wait 4^X seconds with X from 0; attempts are 1-based
    assert domain.retry_delay(domain.PAIR_RATE_LIMIT, 1) == 1.0


def test_pair_rate_limit_delay_is_capped_at_fifteen_minutes() -> None:
    delays = [domain.retry_delay(domain.PAIR_RATE_LIMIT, attempt) for attempt in range(1, 9)]
    assert delays == [1.0, 4.0, 16.0, 64.0, 256.0, 900.0, 900.0, 900.0]
    assert domain.retry_delay(domain.PAIR_RATE_LIMIT, 1000) == domain.MAX_RETRY_DELAY_S
