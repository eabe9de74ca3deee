"""Properties of ingest's webhook domain: whatever a signed body holds, only known outcomes.

A correctly signed body is trusted to come from Meta, not to be well formed. ``split_webhook``
raises :class:`MalformedWebhookError` only when the body is not a webhook at all (not an
object, or no ``entry`` list); the edge dead-letters the body. Inside a webhook it never
raises: an unreadable entry, change, value, message or status is set aside in
``ParsedWebhook.rejected`` (dead-lettered one by one) and the rest of the batch goes on, so
every message and status ends in exactly one of messages, statuses, rejected or unrouted. Any
other exception is a 500, and Meta redelivers the body for days.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from taskpilot.contracts import LeadId
from taskpilot.contracts.whatsapp import (
    ButtonContent,
    ContactsContent,
    InteractiveReplyContent,
    LocationContent,
    MediaContent,
    ReactionContent,
    TextContent,
    UnknownContent,
    UnsupportedContent,
    WhatsAppMessageReceived,
    WhatsAppStatusReceived,
)
from taskpilot.ingest import domain
from taskpilot.ingest.domain import MalformedWebhookError, ParsedWebhook

TENANT = "acme"
NUMBER = "106540352242922"
FOREIGN_NUMBER = "999000999000999"
WA_ID = "16505551234"
LEAD_ID = TypeAdapter(LeadId)

# Modest example counts keep the unit suite fast. No example database: a failure prints the
# example that reproduces it.
FAST = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

KNOWN_TYPES = [
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "interactive",
    "button",
    "location",
    "contacts",
    "reaction",
    "unsupported",
]
MESSAGE_KEYS = [
    "id",
    "from",
    "from_user_id",
    "timestamp",
    "type",
    "context",
    "errors",
    "referral",
    *KNOWN_TYPES,
]
VALUE_KEYS = ["metadata", "contacts", "messages", "statuses", "errors", "messaging_product"]
STATUS_KEYS = [
    "id",
    "status",
    "timestamp",
    "recipient_id",
    "recipient_user_id",
    "conversation",
    "pricing",
    "errors",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def objects_with(
    keys: list[str], values: st.SearchStrategy[Any], required: tuple[str, ...] = ()
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly the ones the parser reads, with any values.

    ``required`` keys are always present, usually with a non-empty string.
    """
    free = st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), values, max_size=8)
    fixed = st.fixed_dictionaries(dict.fromkeys(required, st.text(min_size=1) | values))
    return st.builds(lambda a, b: a | b, free, fixed)


def envelope(value: Any) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def routed_value(messages: list[Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": WA_ID}],
        "messages": messages,
    }


def split(payload: Any) -> ParsedWebhook:
    """Split a body that is a webhook: anything raised here fails the property."""
    return domain.split_webhook(payload, TENANT, {NUMBER})


def is_webhook(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("entry"), list)


def _filled(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def readable_message(message: Any) -> bool:
    """An object with a string id and a non-empty string sender (``from``, else the BSUID)."""
    return (
        isinstance(message, dict)
        and _filled(message.get("id"))
        and _filled(message.get("from") or message.get("from_user_id"))
    )


def readable_status(state: Any) -> bool:
    return (
        isinstance(state, dict)
        and _filled(state.get("id"))
        and _filled(state.get("recipient_id") or state.get("recipient_user_id"))
    )


def _no_empty_id(update: Any) -> bool:
    # An empty string id is kept today; test_ingest_webhook has its strict xfail.
    return not (isinstance(update, dict) and update.get("id") == "")


def _hashable_state(update: Any) -> bool:
    # A list/object 'status' is rejected today; test_ingest_webhook has its strict xfail.
    return not (isinstance(update, dict) and isinstance(update.get("status"), list | dict))


def survives_the_bus(received: WhatsAppMessageReceived | WhatsAppStatusReceived) -> None:
    assert type(received).from_bytes(received.to_bytes()) == received


any_message = (
    objects_with(MESSAGE_KEYS, json_values, required=("id", "from"))
    | objects_with(MESSAGE_KEYS, json_values, required=("id", "from_user_id"))
    | objects_with(MESSAGE_KEYS, json_values)
    | json_values
)
any_status = (
    objects_with(STATUS_KEYS, json_values, required=("id", "recipient_id"))
    | objects_with(STATUS_KEYS, json_values, required=("id", "recipient_user_id"))
    | objects_with(STATUS_KEYS, json_values)
    | json_values
)


# -- any JSON: a ParsedWebhook, or MalformedWebhookError only for a body that is no webhook ----

webhook_like = objects_with(["object", "entry"], json_values | st.lists(json_values, max_size=3))


@FAST
@example(payload={"entry": ["not-an-object"]})
@example(payload={"entry": {"id": "waba"}})
@example(payload=[{"entry": []}])
@given(json_values | webhook_like)
def test_any_json_is_parsed_or_malformed_only_when_it_is_not_a_webhook(payload: Any) -> None:
    if is_webhook(payload):
        assert isinstance(split(payload), ParsedWebhook)
    else:
        with pytest.raises(MalformedWebhookError):
            split(payload)


@FAST
@given(st.lists(json_values | objects_with(["id", "changes"], json_values), max_size=4))
def test_any_entries_never_raise_and_each_unreadable_entry_is_rejected(entries: list[Any]) -> None:
    parsed = split({"object": "whatsapp_business_account", "entry": entries})
    unreadable = [
        e for e in entries if not isinstance(e, dict) or not isinstance(e.get("changes", []), list)
    ]
    entry_rejections = [r for r in parsed.rejected if "entry" in r.reason]
    assert [r.item for r in entry_rejections] == unreadable


@FAST
@example(value={"metadata": [], "messages": [{"id": "w", "from": "1"}]})
@example(value={"errors": 5})
@example(value={"metadata": {"phone_number_id": NUMBER}, "contacts": [{"profile": ["x"]}]})
@example(value={"metadata": {"phone_number_id": NUMBER}, "statuses": [{"id": "w", "pricing": 1}]})
@example(value={"metadata": {"phone_number_id": NUMBER}, "messages": {"id": "w"}})
@given(
    objects_with(VALUE_KEYS, json_values)
    | st.fixed_dictionaries(
        {"metadata": st.just({"phone_number_id": NUMBER}) | json_values},
        optional={
            "contacts": json_values,
            "errors": json_values,
            "messages": st.lists(any_message, max_size=4) | json_values,
            "statuses": st.lists(any_status, max_size=4) | json_values,
        },
    )
)
def test_any_value_object_never_raises_and_keeps_count_of_its_updates(
    value: dict[str, Any],
) -> None:
    parsed = split(envelope(value))
    messages, statuses = value.get("messages") or [], value.get("statuses") or []
    errors = value.get("errors")
    assert parsed.errors == (
        [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    )
    if not isinstance(messages, list) or not isinstance(statuses, list):
        assert [r.item for r in parsed.rejected] == [value]
        assert "list" in parsed.rejected[0].reason
        assert parsed.messages == [] and parsed.statuses == [] and parsed.unrouted == []
        return
    total = len(messages) + len(statuses)
    kept = len(parsed.messages) + len(parsed.statuses)
    assert kept + len(parsed.rejected) + sum(u.count for u in parsed.unrouted) == total
    assert len(parsed.unrouted) <= 1
    if parsed.unrouted:
        assert kept == 0 and parsed.rejected == []


# -- any message or status inside a valid envelope: kept or rejected, never raised ----------


@FAST
@example(message={"id": "w", "from": "1", "type": ["text"]})
@example(message={"id": "w", "from": "1", "timestamp": 10**20})
@example(message={"id": "w", "from": "1", "timestamp": "9" * 5000})
@example(message={"id": "w", "from": "1", "context": {"forwarded": []}})
@example(message={"id": "w", "from": "1", "context": {"id": 5, "from": ["x"]}})
@example(message={"id": "w", "from": None, "from_user_id": "US.1"})
@example(message={"id": "w", "from": "9" * 200})
@example(message={"id": 7, "from": "1"})
@given(any_message)
def test_any_message_in_a_valid_envelope_is_kept_or_rejected_never_raised(message: Any) -> None:
    parsed = split(envelope(routed_value([message])))
    assert parsed.statuses == [] and parsed.unrouted == []
    assert len(parsed.messages) + len(parsed.rejected) == 1
    if parsed.rejected:
        (rejected,) = parsed.rejected
        assert rejected.item is message
        assert "message" in rejected.reason
        assert not readable_message(message)  # a readable message is never rejected
        return
    (received,) = parsed.messages
    assert isinstance(message, dict) and isinstance(message["id"], str)
    assert received.wamid == received.correlation_id == message["id"]
    assert received.phone_number_id == NUMBER and received.tenant_id == TENANT
    assert LEAD_ID.validate_python(received.lead) == received.lead
    sender = message.get("from") or message.get("from_user_id")
    assert received.lead == domain.lead_token(sender)
    assert received.lead_name == ("Sheena Nelson" if sender == WA_ID else None)
    if isinstance(received.content, UnknownContent):
        assert received.content.raw == message
        if not isinstance(message.get("type"), str) or not message.get("type"):
            assert received.content.type == "missing"
    survives_the_bus(received)


@FAST
@example(state={"id": "w", "recipient_id": "1", "conversation": "c1"})
@example(state={"id": "w", "recipient_id": "1", "errors": 5})
@example(state={"id": "w", "recipient_id": "1", "pricing": [1]})
@example(state={"id": "w", "recipient_id": "1", "timestamp": "99999999999999999999"})
@example(state={"id": "w", "recipient_id": "1", "status": 7})
@example(state={"id": "w", "recipient_user_id": "US." + "1" * 100})
@example(state={"status": "read", "recipient_id": "1"})
@given(any_status.filter(_hashable_state))
def test_any_status_in_a_valid_envelope_is_kept_or_rejected_never_raised(state: Any) -> None:
    parsed = split(envelope(routed_value([]) | {"statuses": [state]}))
    assert parsed.messages == [] and parsed.unrouted == []
    assert len(parsed.statuses) + len(parsed.rejected) == 1
    if parsed.rejected:
        (rejected,) = parsed.rejected
        assert rejected.item is state
        assert "status" in rejected.reason
        assert not readable_status(state)  # a readable status is never rejected
        return
    (received,) = parsed.statuses
    assert isinstance(state, dict) and isinstance(state["id"], str)
    assert received.wamid == received.correlation_id == state["id"]
    assert LEAD_ID.validate_python(received.lead) == received.lead
    given_state = state.get("status")
    assert received.status == (given_state if given_state in domain.KNOWN_STATUSES else "unknown")
    for slot in ("conversation", "pricing"):
        expected = state.get(slot) if isinstance(state.get(slot), dict) else None
        assert getattr(received, slot) == expected
    errors = state.get("errors")
    assert received.errors == (
        [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    )
    survives_the_bus(received)


contexts = st.fixed_dictionaries(
    {},
    optional={
        "from": st.text(max_size=15),
        "id": st.text(max_size=15),
        "forwarded": st.booleans(),
        "frequently_forwarded": st.booleans(),
        "referred_product": json_values,
    },
)


@FAST
@given(contexts)
def test_a_well_typed_context_is_kept_and_survives_the_bus(context: dict[str, Any]) -> None:
    message = {"id": "wamid.x", "from": WA_ID, "type": "text", "text": {"body": "hi"}}
    (received,) = split(envelope(routed_value([message | {"context": context}]))).messages
    assert received.context is not None
    assert received.context.message_id == context.get("id")
    assert received.context.from_ == context.get("from")
    assert received.context.forwarded == context.get("forwarded", False)
    assert received.context.frequently_forwarded == context.get("frequently_forwarded", False)
    survives_the_bus(received)


# -- a whole batch: every update ends in exactly one place ----------------------------------


@dataclass
class Plan:
    """What a generated batch must become, written down while it is generated."""

    payload: dict[str, Any] = field(default_factory=dict)
    bad_containers: list[Any] = field(default_factory=list)  # entries, changes, values
    good_messages: list[str] = field(default_factory=list)  # wamids, in order
    good_statuses: list[str] = field(default_factory=list)
    bad_updates: list[Any] = field(default_factory=list)  # messages/statuses to reject
    routed_updates: int = 0  # every message and status of a routed value
    unrouted: list[int] = field(default_factory=list)  # updates per unrouted value
    ignored: int = 0


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
senders = st.integers(10**6, 10**15 - 1).map(str) | st.builds(
    "{}.{}".format, st.sampled_from(["US", "BR", "IN"]), st.text(ALNUM, min_size=1, max_size=40)
)
STATES = ["sent", "delivered", "read", "failed", "played"]
not_lists = json_values.filter(lambda v: bool(v) and not isinstance(v, list))
not_objects = json_values.filter(lambda v: not isinstance(v, dict))
other_fields = st.sampled_from(["account_update", "message_template_status_update", "history"])


# Builders of updates and containers the parser must reject. Each call makes a fresh object,
# so a rejected item can be found by identity.
BAD_UPDATES = [
    lambda: {"from": WA_ID, "type": "text"},  # no id
    lambda: {"id": "wamid.nobody", "type": "text"},  # no sender, no recipient
    lambda: {"id": ["wamid.x"], "from": WA_ID, "recipient_id": WA_ID},  # id not a string
    lambda: ["not", "an", "object"],
]
BAD_CHANGES = [
    lambda: ["not", "a", "change"],
    lambda: {"field": "messages"},  # no value
    lambda: {"field": "messages", "value": ["not", "an", "object"]},
]
BAD_ENTRIES = [
    lambda: ["not", "an", "entry"],
    lambda: {"id": "waba", "changes": {"value": {}}},
    lambda: {"id": "waba", "changes": None},
]


@st.composite
def batches(draw: st.DrawFn) -> Plan:
    """Entries of good, bad, unrouted and ignored changes, with the outcome each must have."""
    plan = Plan()
    serial = itertools.count()

    def good_message() -> dict[str, Any]:
        wamid = f"wamid.in{next(serial)}"
        plan.good_messages.append(wamid)
        body = draw(st.text(max_size=30))
        return {"id": wamid, "from": draw(senders), "type": "text", "text": {"body": body}}

    def good_status() -> dict[str, Any]:
        wamid = f"wamid.out{next(serial)}"
        plan.good_statuses.append(wamid)
        return {"id": wamid, "status": draw(st.sampled_from(STATES)), "recipient_id": WA_ID}

    def bad(builders: list[Any]) -> Any:
        item = draw(st.sampled_from(builders))()
        (plan.bad_updates if builders is BAD_UPDATES else plan.bad_containers).append(item)
        return item

    def updates(good: Any, arbitrary: st.SearchStrategy[Any]) -> list[Any]:
        out = []
        for pick in draw(st.lists(st.sampled_from(["good", "bad", "any"]), max_size=4)):
            if pick == "good":
                out.append(good())
            elif pick == "bad":
                out.append(bad(BAD_UPDATES))
            else:
                out.append(draw(arbitrary.filter(_no_empty_id).filter(_hashable_state)))
        return out

    def a_routed_value() -> dict[str, Any]:
        number = draw(st.sampled_from([NUMBER, int(NUMBER)]))
        value: dict[str, Any] = {"metadata": {"phone_number_id": number}}
        value["messages"] = updates(good_message, any_message)
        value["statuses"] = updates(good_status, any_status)
        if draw(st.booleans()):
            value["contacts"] = draw(json_values)
        if draw(st.booleans()):
            value["errors"] = draw(json_values)
        plan.routed_updates += len(value["messages"]) + len(value["statuses"])
        return value

    def an_unrouted_value() -> dict[str, Any]:
        metadata = draw(st.just({"phone_number_id": FOREIGN_NUMBER}) | not_objects)
        messages = draw(st.lists(any_message, max_size=3))
        statuses = draw(st.lists(any_status, max_size=3))
        if messages or statuses:
            plan.unrouted.append(len(messages) + len(statuses))
        return {"metadata": metadata, "messages": messages, "statuses": statuses}

    def a_value_without_lists() -> dict[str, Any]:
        # the message beside the bad slot goes with its value to the dead letter
        lost = {"id": "wamid.lost-with-its-value", "from": WA_ID, "type": "text"}
        value = {"metadata": {"phone_number_id": NUMBER}, "messages": [lost]}
        value[draw(st.sampled_from(["messages", "statuses"]))] = draw(not_lists)
        plan.bad_containers.append(value)
        return value

    def a_change() -> Any:
        kind = draw(st.sampled_from(["routed", "unrouted", "no-lists", "other-field", "bad"]))
        if kind == "bad":
            return bad(BAD_CHANGES)
        if kind == "other-field":
            plan.ignored += 1
            ignored = {"id": "wamid.ignored", "from": WA_ID, "type": "text"}
            value = {"metadata": {"phone_number_id": NUMBER}, "messages": [ignored]}
            return {"field": draw(other_fields), "value": value}
        make = {"routed": a_routed_value, "unrouted": an_unrouted_value}
        value = make.get(kind, a_value_without_lists)()
        return {"field": "messages", "value": value} if draw(st.booleans()) else {"value": value}

    entries: list[Any] = []
    for kind in draw(st.lists(st.sampled_from(["good", "good", "bad"]), max_size=4)):
        if kind == "bad":
            entries.append(bad(BAD_ENTRIES))
        else:
            changes = [a_change() for _ in range(draw(st.integers(0, 3)))]
            entries.append({"id": "waba", "changes": changes})
    plan.payload = {"object": "whatsapp_business_account", "entry": entries}
    return plan


def _contains_in_order(whole: list[str], part: list[str]) -> bool:
    rest = iter(whole)
    return all(any(item == wanted for item in rest) for wanted in part)


@FAST
@given(batches())
def test_every_update_of_a_batch_ends_in_exactly_one_place(plan: Plan) -> None:
    parsed = split(plan.payload)
    kept = len(parsed.messages) + len(parsed.statuses)
    rejected_items = [r.item for r in parsed.rejected]
    rejected_updates = len(parsed.rejected) - len(plan.bad_containers)
    # count conservation: each routed message/status is kept or rejected, exactly once
    assert kept + rejected_updates == plan.routed_updates
    assert [u.count for u in parsed.unrouted] == plan.unrouted
    assert len(parsed.ignored_fields) == plan.ignored
    # what must be kept is kept, in order; what must be rejected is rejected, by identity
    assert _contains_in_order([m.wamid for m in parsed.messages], plan.good_messages)
    assert _contains_in_order([s.wamid for s in parsed.statuses], plan.good_statuses)
    for bad in [*plan.bad_containers, *plan.bad_updates]:
        assert sum(item is bad for item in rejected_items) == 1
    assert all(r.reason for r in parsed.rejected)


# -- every known type: its content, or the raw message; never an exception -------------------

BODY_KEYS = [
    "id",
    "body",
    "caption",
    "mime_type",
    "sha256",
    "filename",
    "voice",
    "animated",
    "type",
    "button_reply",
    "list_reply",
    "title",
    "description",
    "payload",
    "text",
    "latitude",
    "longitude",
    "name",
    "address",
    "url",
    "message_id",
    "emoji",
]
CONTENT_OF = {
    "text": TextContent,
    "image": MediaContent,
    "audio": MediaContent,
    "video": MediaContent,
    "document": MediaContent,
    "sticker": MediaContent,
    "interactive": InteractiveReplyContent,
    "button": ButtonContent,
    "location": LocationContent,
    "contacts": ContactsContent,
    "reaction": ReactionContent,
    "unsupported": UnsupportedContent,
}
# Near-valid bodies (the fields each type needs, with any values) reach the typed branches;
# plain JSON reaches the fallbacks.
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers()
replies = objects_with(["id", "title", "description"], json_values, required=("id", "title"))
NEAR_VALID = {
    "text": {"body": st.text()},
    "interactive": {"type": st.sampled_from(["button_reply", "list_reply"])},
    "button": {"payload": st.text(), "text": st.text()},
    "location": {"latitude": numbers, "longitude": numbers},
    "reaction": {"message_id": st.text(min_size=1), "emoji": st.sampled_from(["", "\U0001f44d"])},
    **{kind: {"id": st.text(min_size=1)} for kind in domain.MEDIA_KINDS},
}


def _near_valid(fields: dict[str, Any], reply: Any, rest: dict[str, Any]) -> dict[str, Any]:
    body = rest | fields
    sub = body.get("type")
    return body | {sub: reply} if sub in ("button_reply", "list_reply") else body


def body_for(kind: str) -> st.SearchStrategy[Any]:
    near_valid = st.builds(
        _near_valid,
        st.fixed_dictionaries(NEAR_VALID.get(kind, {})),
        replies | json_values,
        objects_with(BODY_KEYS, json_values),
    )
    return near_valid | json_values


typed_bodies = st.sampled_from(KNOWN_TYPES).flatmap(lambda k: st.tuples(st.just(k), body_for(k)))


@FAST
@given(typed_bodies, json_values, json_values)
def test_known_type_with_any_body_is_its_content_or_kept_raw(
    kind_and_body: tuple[str, Any], contacts: Any, errors: Any
) -> None:
    kind, body = kind_and_body
    message = {
        "from": WA_ID,
        "id": "wamid.x",
        "timestamp": "1749416383",
        "type": kind,
        kind: body,
        "contacts": contacts,
        "errors": errors,
    }
    content = domain.parse_content(message)
    assert isinstance(content, CONTENT_OF[kind] | UnknownContent)
    kept = [c for c in contacts if isinstance(c, dict)] if isinstance(contacts, list) else []
    if kind == "contacts" and kept:
        # contacts are read from the message's own list, keeping its objects
        assert content == ContactsContent(contacts=kept)
    elif not isinstance(message[kind], dict):
        # a body that is not an object is never read as empty content (text, button included)
        assert content == UnknownContent(type=kind, raw=message)
    elif kind == "unsupported":
        given_type = message[kind].get("type")
        expected_errors = (
            [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        )
        assert content == UnsupportedContent(
            errors=expected_errors, type=given_type if isinstance(given_type, str) else None
        )
    if isinstance(content, UnknownContent):
        assert content == UnknownContent(type=kind, raw=message)
    elif isinstance(content, MediaContent):
        assert content.kind == kind


# -- well-formed batches: one contract message per message and per status -------------------


@FAST
@given(
    st.lists(st.tuples(senders, st.text(max_size=200)), max_size=12),
    st.lists(st.tuples(senders, st.sampled_from(STATES)), max_size=12),
)
def test_well_formed_batch_splits_into_one_message_per_update(
    texts: list[tuple[str, str]], states: list[tuple[str, str]]
) -> None:
    messages = [
        {
            "from": who,
            "id": f"wamid.in{n}",
            "timestamp": "1749416383",
            "type": "text",
            "text": {"body": body},
        }
        for n, (who, body) in enumerate(texts)
    ]
    statuses = [
        {"id": f"wamid.out{n}", "status": state, "timestamp": "1749416383", "recipient_id": who}
        for n, (who, state) in enumerate(states)
    ]
    parsed = domain.split_webhook(
        envelope(routed_value(messages) | {"statuses": statuses}), TENANT, {NUMBER}
    )
    assert [m.wamid for m in parsed.messages] == [m["id"] for m in messages]
    assert [m.content for m in parsed.messages] == [TextContent(body=b) for _, b in texts]
    assert [m.lead for m in parsed.messages] == [domain.lead_token(w) for w, _ in texts]
    assert [s.status for s in parsed.statuses] == [state for _, state in states]
    assert len({domain.status_msg_id(s) for s in parsed.statuses}) == len(states)


# -- lead tokens --------------------------------------------------------------------------------


@FAST
@given(st.text(max_size=150))
def test_lead_token_is_a_subject_token_or_malformed_when_empty(raw: str) -> None:
    try:
        token = domain.lead_token(raw)
    except MalformedWebhookError:
        assert raw == ""
        return
    assert LEAD_ID.validate_python(token) == token
    assert len(token) == min(len(raw), 64)
    if len(raw) <= 64:
        assert len(token) == len(raw)
    else:
        assert token[47] == "_"
        assert token[48:] == hashlib.sha256(raw.encode()).hexdigest()[:16]


long_ids = st.builds(
    "{}.{}".format,
    st.sampled_from(["US", "BR", "US.ENT"]),
    st.text(ALNUM, min_size=62, max_size=128),
)


@FAST
@example(first="BR." + "1" * 70 + "A", second="BR." + "1" * 70 + "B")
@given(long_ids, long_ids)
def test_distinct_long_ids_stay_distinct_leads(first: str, second: str) -> None:
    if first != second:
        assert domain.lead_token(first) != domain.lead_token(second)
    else:
        assert domain.lead_token(first) == domain.lead_token(second)


@FAST
@given(long_ids)
def test_long_id_keeps_its_readable_prefix(raw: str) -> None:
    token = domain.lead_token(raw)
    assert len(token) == 64
    assert token[:47] == raw[:47].replace(".", "_")


@FAST
@given(st.from_regex(r"[A-Z]{2}(\.ENT)?\.[A-Za-z0-9]{1,50}|[0-9]{1,15}", fullmatch=True))
def test_lead_token_of_wa_ids_and_bsuids_can_be_read_back(raw: str) -> None:
    assert domain.lead_token(raw).replace("_", ".") == raw


# -- signatures ---------------------------------------------------------------------------------


@FAST
@given(st.binary(min_size=1, max_size=300), st.text(min_size=1, max_size=40), st.data())
def test_signature_accepts_its_body_only(body: bytes, secret: str, data: st.DataObject) -> None:
    header = domain.signature_of(body, secret)
    assert domain.signature_valid(body, header, secret)
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flipped = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
    assert not domain.signature_valid(flipped, header, secret)
    assert not domain.signature_valid(body, header, secret + "x")


@FAST
@example(header="sha256=\u00e9" + "0" * 63)
@given(st.none() | st.text(max_size=80) | st.text(max_size=64).map("sha256=".__add__))
def test_any_signature_header_is_a_yes_or_no_never_an_error(header: str | None) -> None:
    body = b'{"entry":[]}'
    assert domain.signature_valid(body, header, "secret") is (
        header == domain.signature_of(body, "secret")
    )


# -- retries ------------------------------------------------------------------------------------


@FAST
@given(st.none() | st.integers(min_value=0, max_value=200_000), st.floats(0.01, 10.0))
@example(code=domain.PAIR_RATE_LIMIT, base=1.0)
@example(code=domain.PAIR_RATE_LIMIT, base=10.0)
def test_retry_delays_grow_and_stay_bounded(code: int | None, base: float) -> None:
    delays = [domain.retry_delay(code, attempt, base) for attempt in range(1, 12)]
    assert all(a <= b for a, b in pairwise(delays))
    if code == domain.PAIR_RATE_LIMIT:
        # Meta: 4^X seconds, X from 0, whatever the base; at most 15 minutes
        assert delays == [min(4.0 ** (attempt - 1), 900.0) for attempt in range(1, 12)]
    else:
        assert all(0 < d <= 60.0 for d in delays)


@FAST
@given(st.sampled_from(sorted(domain.RETRYABLE_CODES)), st.none() | st.integers(100, 599))
def test_retryable_codes_are_retried_whatever_the_status(
    code: int, http_status: int | None
) -> None:
    assert domain.is_retryable(code, http_status)


@FAST
@given(st.none() | st.integers(min_value=500, max_value=599) | st.just(429))
def test_server_errors_and_rate_limits_without_a_code_are_retried(http_status: int | None) -> None:
    assert domain.is_retryable(None, http_status)


@FAST
@given(st.integers(min_value=400, max_value=499).filter(lambda s: s != 429))
def test_client_errors_without_a_code_are_not_retried(http_status: int) -> None:
    assert not domain.is_retryable(None, http_status)


@FAST
@given(
    st.sampled_from([domain.APP_RATE_LIMIT, domain.WABA_RATE_LIMIT, domain.THROUGHPUT_LIMIT]),
    st.none() | st.integers(100, 599),
)
def test_throttling_codes_are_retried(code: int, http_status: int | None) -> None:
    assert domain.is_retryable(code, http_status)


wamids = st.sampled_from(["wamid.A", "wamid.A:read", "wamid.B"]) | st.text(max_size=30)


@FAST
@given(wamids, wamids, st.sampled_from(STATES), st.sampled_from(STATES))
def test_status_msg_ids_differ_exactly_when_wamid_or_status_differ(
    wamid_a: str, wamid_b: str, state_a: str, state_b: str
) -> None:
    def status_of(wamid: str, state: str) -> WhatsAppStatusReceived:
        return WhatsAppStatusReceived(
            tenant_id=TENANT,
            correlation_id=wamid,
            wamid=wamid,
            phone_number_id=NUMBER,
            lead=WA_ID,
            status=state,  # type: ignore[arg-type]
            wa_timestamp=datetime(2025, 6, 8, tzinfo=UTC),
        )

    same_id = domain.status_msg_id(status_of(wamid_a, state_a)) == domain.status_msg_id(
        status_of(wamid_b, state_b)
    )
    assert same_id == ((wamid_a, state_a) == (wamid_b, state_b))
