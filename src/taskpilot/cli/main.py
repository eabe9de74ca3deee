"""The ``taskpilot`` command."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from taskpilot.cli.bus_auth import add_nats_parser
from taskpilot.cli.dlq import add_dlq_parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="taskpilot", description="TaskPilot command line")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("TASKPILOT_DATA_DIR", ".taskpilot")),
        help="where the embedded default keeps its data (default: .taskpilot)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run every service in one process on the embedded default")
    chat = commands.add_parser("chat", help="write to the demo tenant as a WhatsApp lead")
    chat.add_argument("--lead", help="the lead's WhatsApp number (default: a new random one)")
    chat.add_argument("--message", help="send one message, print the reply, exit")
    contracts = commands.add_parser("contracts", help="the public message catalogue")
    contracts.add_argument("action", choices=["export"])
    contracts.add_argument("--out", type=Path, default=Path("docs/contracts/schemas"))
    projections = commands.add_parser("projections", help="analytics' read models")
    projections.add_argument("action", choices=["rebuild"])
    projections.add_argument("--compare", action="store_true", help="digests before and after")
    token = commands.add_parser("token", help="a dashboard token from the local issuer")
    token.add_argument("--tenant", help="the tenant (required but for operators)")
    token.add_argument(
        "--role", action="append", choices=["owner", "agent", "operator"], default=[]
    )
    token.add_argument("--subject", default="local-user", help="who (shown as the agent)")
    token.add_argument("--ttl", default="12h", help="lifetime, e.g. 30m, 12h, 7d")
    token.add_argument("--url", action="store_true", help="print the dashboard sign-in URL")
    add_dlq_parser(commands)
    add_nats_parser(commands)
    lifecycle = commands.add_parser("lifecycle", help="archive, restore, retention")
    lifecycle.add_argument("action", choices=["archive", "restore", "retention"])
    lifecycle.add_argument("--tenant", help="one tenant (default: every tenant)")
    lifecycle.add_argument("--lead", help="restore: the lead's WhatsApp id")
    lifecycle.add_argument("--conversation", help="restore: the conversation id")
    lifecycle.add_argument("--batch", type=int, default=100, help="conversations per step")
    lifecycle.add_argument(
        "--days-ahead", type=float, default=0.0, help="act as if this many days later (tests)"
    )
    args = parser.parse_args(argv)

    if args.command == "dev":
        from taskpilot.cli.dev import run_dev
        from taskpilot.runtime.host import run
        from taskpilot.runtime.telemetry import setup_logging

        setup_logging(os.environ.get("TASKPILOT_LOG_LEVEL", "INFO"), as_json=False)
        try:
            run(run_dev(args.data_dir.resolve()))
        except KeyboardInterrupt:
            pass
    elif args.command == "chat":
        from taskpilot.cli.chat import chat as run_chat

        run_chat(args.data_dir.resolve(), args.lead, args.message)
    elif args.command == "contracts":
        from taskpilot.cli.asyncapi import export as export_asyncapi
        from taskpilot.contracts.catalogue import export

        written = export(args.out)
        document = export_asyncapi(args.out.parent)
        print(f"wrote {len(written)} JSON Schemas to {args.out} and the AsyncAPI to {document}")
    elif args.command == "projections":
        import asyncio

        from taskpilot.cli.projections import rebuild

        raise SystemExit(asyncio.run(rebuild(args.compare)))
    elif args.command == "lifecycle":
        import asyncio

        from taskpilot.cli.lifecycle import run as run_lifecycle

        raise SystemExit(
            asyncio.run(
                run_lifecycle(
                    args.action,
                    args.tenant,
                    args.lead,
                    args.conversation,
                    args.batch,
                    args.days_ahead,
                )
            )
        )
    elif args.command == "token":
        from taskpilot.cli.tokens import token as issue

        roles = args.role or ["owner"]
        if args.tenant is None and "operator" not in roles:
            parser.error("--tenant is required unless --role operator")
        print(issue(args.data_dir.resolve(), args.tenant, roles, args.subject, args.ttl, args.url))
    elif args.command == "dlq":
        from taskpilot.cli.dlq import run_dlq

        raise SystemExit(run_dlq(args))
    elif args.command == "nats":
        from taskpilot.cli.bus_auth import run_nats

        raise SystemExit(run_nats(args))


if __name__ == "__main__":
    main()
