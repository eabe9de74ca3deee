"""``taskpilot chat``: write to the demo business as a WhatsApp lead, through every service.

Each line becomes a webhook signed like Meta signs it, posted to ingest; the reply is what the
Graph API sandbox received, and its origin (template, FAQ, handoff) comes from the dashboard
API's read model.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import httpx

from taskpilot.analytics.auth import LocalIssuer
from taskpilot.conversation.domain import conversation_id
from taskpilot.ingest.meta import signed, text_webhook


def load_dev(data_dir: Path) -> dict[str, str]:
    path = data_dir / "dev.json"
    if not path.exists():
        sys.exit(f"{path} not found: start the system first with `make run`")
    return dict(json.loads(path.read_text()))


def dashboard_token(data_dir: Path, tenant: str) -> str:
    """An agent's token from the local issuer (the dashboard API needs one)."""
    issuer = LocalIssuer.in_data_dir(data_dir)
    return issuer.issue(tenant_id=tenant, roles=["agent"], subject="taskpilot-chat", ttl_s=3600)


def origin_of(
    client: httpx.Client, dev: dict[str, str], lead: str, text: str, token: str = ""
) -> str:
    conv = conversation_id(dev["tenant"], lead)
    url = f"{dev['analytics']}/v1/tenants/{dev['tenant']}/conversations/{conv}"
    for _ in range(50):
        response = client.get(url, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            outs = [
                m
                for m in response.json()["messages"]
                if m["direction"] == "out" and m["text"] == text
            ]
            if outs:
                m: dict[str, Any] = outs[-1]
                cited = ", ".join(c["title"] for c in m["citations"])
                return f"{m['tier']} · {m['source']}" + (f" · cites: {cited}" if cited else "")
        client.get(f"{dev['sandbox']}/_sandbox/messages", params={"after": 10**12, "wait": 0.1})
    return "origin not yet projected"


def chat(data_dir: Path, lead: str | None, once: str | None = None) -> None:
    dev = load_dev(data_dir)
    lead = lead or f"3460{random.randint(1000000, 9999999)}"  # noqa: S311 (not security)
    print(f"You are lead +{lead} writing to tenant '{dev['tenant']}'. Empty line or Ctrl-D quits.")
    token = dashboard_token(data_dir, dev["tenant"])
    with httpx.Client(timeout=40) as client:
        last = max(
            (m["seq"] for m in client.get(f"{dev['sandbox']}/_sandbox/messages").json()), default=0
        )
        lines = [once] if once else iter(lambda: input("you> "), "")
        try:
            for text in lines:
                body, headers = signed(
                    text_webhook(dev["phone_number_id"], lead, text), dev["app_secret"]
                )
                response = client.post(
                    f"{dev['ingest']}/webhooks/whatsapp/{dev['tenant']}",
                    content=body,
                    headers=headers,
                )
                if response.status_code != 200:
                    print(f"  ingest answered {response.status_code}: {response.text}")
                    continue
                sent = client.get(
                    f"{dev['sandbox']}/_sandbox/messages",
                    params={"after": last, "to": lead, "wait": 15},
                ).json()
                if not sent:
                    print(
                        "  (no reply: the conversation is with a human now, the bot stays silent;"
                        " start over with --lead <another number>)"
                    )
                    continue
                for message in sent:
                    last = max(last, message["seq"])
                    print(f"bot> {message['text']}")
                    print(f"     [{origin_of(client, dev, lead, message['text'], token)}]")
        except (EOFError, KeyboardInterrupt):
            print()
