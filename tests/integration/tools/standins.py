"""Local stand-ins for the providers the tools service talks to, served over real HTTP on
loopback: Google Calendar (OAuth token endpoint + Calendar v3 JSON), Stripe (form-encoded API,
idempotency keys, signed webhooks) and a webhook receiver (n8n or a CRM).

They implement the slice of each API the adapters use, with the providers' shapes and status
codes, plus knobs to inject failures. Each runs in its own thread under uvicorn.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from taskpilot.runtime.servers import free_port, wait_until
from taskpilot.tools.signing import signature_header


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, f"stand-in on {port}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _error(status: int, message: str, reason: str = "") -> JSONResponse:
    return JSONResponse(
        {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}},
        status_code=status,
    )


@dataclass
class GoogleStandIn:
    """OAuth refresh-token grant and Calendar v3 ``freeBusy``, ``events`` insert/get/delete."""

    clients: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    fail_next: list[int] = field(default_factory=list)
    freebusy_errors: set[str] = field(default_factory=set)
    refreshes: int = 0
    inserts: int = 0

    def add_client(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.clients.setdefault((client_id, client_secret), set()).add(refresh_token)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = dict(parse_qsl((await request.body()).decode()))
            refresh = self.clients.get((form.get("client_id", ""), form.get("client_secret", "")))
            if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in (
                refresh or set()
            ):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            access = "ya29." + secrets.token_urlsafe(16)
            self.tokens[access] = time.time() + 3600
            self.refreshes += 1
            return JSONResponse(
                {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}
            )

        def authorized(request: Request) -> bool:
            header = request.headers.get("authorization", "")
            return header.startswith("Bearer ") and self.tokens.get(header[7:], 0) > time.time()

        @app.middleware("http")
        async def guard(request: Request, call_next: Any) -> Response:
            if request.url.path.startswith("/calendar/v3/"):
                if self.fail_next:
                    status = self.fail_next.pop(0)
                    return _error(status, "injected failure", "backendError")
                if not authorized(request):
                    return _error(401, "Invalid Credentials", "authError")
            response: Response = await call_next(request)
            return response

        @app.post("/calendar/v3/freeBusy")
        async def free_busy(body: dict[str, Any]) -> dict[str, Any]:
            low, high = _dt(body["timeMin"]), _dt(body["timeMax"])
            calendars: dict[str, Any] = {}
            for item in body["items"]:
                cid = item["id"]
                if cid in self.freebusy_errors:
                    calendars[cid] = {"errors": [{"domain": "global", "reason": "backendError"}]}
                    continue
                busy = [
                    {"start": e["start"]["dateTime"], "end": e["end"]["dateTime"]}
                    for e in self.events[cid].values()
                    if e["status"] != "cancelled"
                    and _dt(e["start"]["dateTime"]) < high
                    and _dt(e["end"]["dateTime"]) > low
                ]
                calendars[cid] = {"busy": sorted(busy, key=lambda b: b["start"])}
            return {
                "kind": "calendar#freeBusy",
                "timeMin": body["timeMin"],
                "timeMax": body["timeMax"],
                "calendars": calendars,
            }

        @app.post("/calendar/v3/calendars/{cid}/events")
        async def insert(cid: str, body: dict[str, Any]) -> Response:
            event_id = body.get("id") or secrets.token_hex(16)
            if event_id in self.events[cid]:
                return _error(409, "The requested identifier already exists.", "duplicate")
            event = {**body, "id": event_id, "status": "confirmed", "kind": "calendar#event"}
            self.events[cid][event_id] = event
            self.inserts += 1
            return JSONResponse(event)

        @app.get("/calendar/v3/calendars/{cid}/events/{event_id}")
        async def get(cid: str, event_id: str) -> Response:
            event = self.events[cid].get(event_id)
            return JSONResponse(event) if event else _error(404, "Not Found", "notFound")

        @app.delete("/calendar/v3/calendars/{cid}/events/{event_id}")
        async def delete(cid: str, event_id: str) -> Response:
            event = self.events[cid].get(event_id)
            if event is None:
                return _error(404, "Not Found", "notFound")
            if event["status"] == "cancelled":
                return _error(410, "Resource has been deleted", "deleted")
            event["status"] = "cancelled"
            return Response(status_code=204)

        return app


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    result: dict[str, Any] = _lists(root)
    return result


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


@dataclass
class StripeStandIn:
    """``POST /v1/checkout/sessions`` with Stripe's idempotency semantics, and events signed
    like Stripe's (``Stripe-Signature: t=..,v1=..``)."""

    api_key: str = "sk_test_standin"
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)
    requests: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/checkout/sessions")
        async def create(request: Request) -> JSONResponse:
            self.requests += 1
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _stripe_error(401, "authentication_error", "Invalid API Key provided")
            if self.fail_next:
                status = self.fail_next.pop(0)
                return _stripe_error(status, "api_error", "injected failure")
            raw = (await request.body()).decode()
            key = request.headers.get("idempotency-key")
            digest = hashlib.sha256(raw.encode()).hexdigest()
            if key and key in self.idempotency:
                seen, response = self.idempotency[key]
                if seen != digest:
                    return _stripe_error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used "
                        "with the same parameters they were first used with.",
                    )
                return JSONResponse(response, headers={"Idempotent-Replayed": "true"})
            params = decode_form(raw)
            items = params.get("line_items", [])
            if not items or any(int(i["price_data"]["unit_amount"]) <= 0 for i in items):
                return _stripe_error(400, "invalid_request_error", "Invalid line_items")
            session_id = "cs_test_" + secrets.token_hex(12)
            amount = sum(
                int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items
            )
            session = {
                "id": session_id,
                "object": "checkout.session",
                "mode": params.get("mode"),
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                "amount_total": amount,
                "currency": items[0]["price_data"]["currency"],
                "metadata": params.get("metadata", {}),
                "client_reference_id": params.get("client_reference_id"),
                "payment_status": "unpaid",
                "status": "open",
                "success_url": params.get("success_url"),
            }
            self.sessions[session_id] = session
            if key:
                self.idempotency[key] = (digest, session)
            return JSONResponse(session)

        return app

    def signed_event(
        self,
        session_id: str,
        secret: str,
        kind: str = "checkout.session.completed",
        payment_status: str = "paid",
        timestamp: int | None = None,
    ) -> tuple[bytes, str]:
        """The body and ``Stripe-Signature`` header Stripe would send for this session."""
        session = {**self.sessions[session_id], "payment_status": payment_status}
        session["status"] = "complete"
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {"object": session},
        }
        body = json.dumps(event).encode()
        return body, signature_header(secret, timestamp or int(time.time()), body)


def _stripe_error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


@dataclass
class Receiver:
    """A webhook receiver (a CRM, an n8n webhook node): records what it gets, answers with
    the statuses queued per path (then 200)."""

    received: list[dict[str, Any]] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    always: dict[str, int] = field(default_factory=dict)

    def on(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def receive(path: str, request: Request) -> Response:
            body = await request.body()
            status = self.script[path].pop(0) if self.script[path] else self.always.get(path, 200)
            self.received.append(
                {
                    "path": path,
                    "headers": dict(request.headers),
                    "body": body,
                    "status": status,
                }
            )
            return JSONResponse({"ok": status < 300, "path": path}, status_code=status)

        return app
