"""``taskpilot dlq``: review the dead letters the dashboard shows, replay or discard them.

    taskpilot dlq list [--tenant T] [--origin O] [--reason R] [--limit N] [--json]
    taskpilot dlq show ID
    taskpilot dlq replay ID [--note TEXT]
    taskpilot dlq discard ID [--note TEXT]

``ID`` is the record's sequence in the ``DEAD_LETTERS`` stream (first column of ``list``) or
its ``event_id`` (the id the dashboard shows). Replay and discard are recorded (operator, time,
note) in the ``DLQ_ACTIONS`` stream.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Any


def add_dlq_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="list, show, replay or discard dead letters")
    dlq.add_argument("--nats-url", default=None, help="default: NATS_URL or the embedded one")
    dlq.add_argument("--operator", default=None, help="recorded with replays and discards")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = actions.add_parser("list", help="dead letters, oldest first")
    listing.add_argument("--tenant")
    listing.add_argument("--origin", help="consumer (or edge) where it failed")
    listing.add_argument("--reason", help="e.g. max_deliveries, invalid_message")
    listing.add_argument("--limit", type=int, default=100, help="the newest N (0: all)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one dead letter, whole, with its history")
    show.add_argument("id", help="sequence in DEAD_LETTERS, or the event_id")
    for name, text in (
        ("replay", "republish the original message to its original subject"),
        ("discard", "remove the record (kept in the audit record)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", help="sequence in DEAD_LETTERS, or the event_id")
        action.add_argument("--note", default="", help="why (recorded)")


def run_dlq(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from taskpilot.contracts.subjects import ALL_STREAMS
    from taskpilot.runtime.bus import Bus, ensure_streams
    from taskpilot.runtime.dlq import (
        RUNTIME_STREAMS,
        DeadLetterAdmin,
        LetterNotFoundError,
        NotReplayableError,
    )
    from taskpilot.runtime.permissions import ADMIN
    from taskpilot.runtime.settings import CommonSettings

    settings = CommonSettings()
    bus = Bus(
        args.nats_url or settings.nats_url,
        name="cli-dlq",
        publish_retry_s=5.0,
        credentials=settings.nats_credentials(ADMIN),
    )
    await bus.connect()
    try:
        await ensure_streams(bus.js, ALL_STREAMS + RUNTIME_STREAMS)
        admin = DeadLetterAdmin(bus, args.operator or _operator())
        try:
            if args.dlq_command == "list":
                records = await admin.list(args.tenant, args.origin, args.reason, args.limit)
                _print_list(records, args.json)
            elif args.dlq_command == "show":
                record = await admin.show(args.id)
                print(json.dumps(_detail(record), indent=2, default=str))
            elif args.dlq_command == "replay":
                done = await admin.replay(args.id, args.note)
                print(
                    f"replayed {args.id} to {done.republished_subject} "
                    f"(seq {done.republished_seq}, Nats-Msg-Id {done.republished_msg_id})"
                )
            else:
                await admin.discard(args.id, args.note)
                print(f"discarded {args.id} (recorded in DLQ_ACTIONS)")
        except (LetterNotFoundError, NotReplayableError) as exc:
            print(f"taskpilot dlq: {exc}", file=sys.stderr)
            return 1
    finally:
        await bus.close()
    return 0


def _operator() -> str:
    try:
        return os.environ.get("TASKPILOT_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _print_list(records: list[Any], as_json: bool) -> None:
    if as_json:
        for record in records:
            print(json.dumps(_summary(record), default=str))
        return
    if not records:
        print("no dead letters")
        return
    print(f"{'seq':>6}  {'at':<19}  {'tenant':<16} {'origin':<28} {'reason':<18} {'n':>2}  status")
    for r in records:
        s = _summary(r)
        print(
            f"{s['seq']:>6}  {s['at'][:19]:<19}  {s['tenant'][:16]:<16} {s['origin'][:28]:<28} "
            f"{s['reason'][:18]:<18} {s['attempts']:>2}  {s['status']}"
        )
        print(f"{'':>8}{s['error'][:110]}")


def _summary(record: Any) -> dict[str, Any]:
    letter = record.letter
    return {
        "seq": record.seq,
        "id": str(letter.event_id),
        "at": letter.occurred_at.isoformat(),
        "tenant": letter.tenant_id,
        "origin": letter.origin,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "status": record.status,
        "subject": letter.original_subject,
        "error": letter.error.replace("\n", " "),
    }


def _detail(record: Any) -> dict[str, Any]:
    body = json.loads(record.letter.model_dump_json())
    if record.letter.payload_encoding == "utf-8":
        try:
            body["payload"] = json.loads(record.letter.payload)
        except ValueError:
            pass
    return {
        "seq": record.seq,
        "status": record.status,
        "letter": body,
        "actions": [json.loads(a.model_dump_json()) for a in record.actions],
    }
