"""A local stand-in for Meta's Graph API send and media surfaces: the sandbox channel.

It speaks Meta's request and response format (``POST /{version}/{phone_number_id}/messages``,
``{"messages": [{"id": "wamid..."}]}``, error objects with ``code``), records every send so the
chat terminal, the dashboard and the tests can see them, and can be told to fail with a given
error code. Media uploaded with ``POST /_sandbox/media`` is served the way Meta serves a lead's
media: ``GET /{version}/{media_id}`` answers with a short-lived URL on the stand-in itself,
which hands out the bytes only with the bearer token.
``python -m taskpilot.ingest.sandbox --port 8099`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

ERROR_TITLES = {
    1: ("API Unknown", 500),
    2: ("API Service", 503),
    100: ("Invalid parameter", 400),
    190: ("Access token has expired", 401),
    130429: ("Rate limit hit", 400),
    131000: ("Something went wrong", 500),
    131047: ("Re-engagement message", 400),
    131056: ("(Business Account, Consumer Account) pair rate limit hit", 400),
}


class SentMessage(BaseModel):
    seq: int
    received_at: float = Field(description="time.time() when the stand-in received it")
    phone_number_id: str
    to: str
    type: str
    text: str | None
    wamid: str
    body: dict[str, Any]


class FailureRule(BaseModel):
    code: int
    times: int = 1
    phone_number_id: str | None = None
    on: Literal["send", "media"] = Field(
        default="send", description="fail sends, or media look-ups (GET /{version}/{media_id})"
    )


class UploadedMedia(BaseModel):
    """What ``GET /{version}/{media_id}`` will say about an uploaded file."""

    id: str
    mime_type: str
    sha256: str
    file_size: int


@dataclass
class _Media:
    info: UploadedMedia
    data: bytes


def meta_error(code: int, detail: str = "") -> JSONResponse:
    title, status = ERROR_TITLES.get(code, ("Error", 400))
    return JSONResponse(
        {
            "error": {
                "message": f"(#{code}) {title}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": detail or title},
                "fbtrace_id": base64.urlsafe_b64encode(os.urandom(9)).decode(),
            }
        },
        status_code=status,
    )


def invalid_send(body: dict[str, Any]) -> str | None:
    """What Meta would refuse in a /messages body (the checks that matter to us)."""
    if not body.get("to"):
        return "'to' is required"
    kind = body.get("type", "text")
    part = body.get(kind)
    if not isinstance(part, dict):
        return f"'{kind}' object is required"
    if kind == "text":
        text = part.get("body")
        if not isinstance(text, str) or not text or len(text) > 4096:
            return "text.body must be 1-4096 characters"
    elif kind == "template":
        if not part.get("name") or not isinstance(part.get("language"), dict):
            return "template.name and template.language.code are required"
    elif kind == "interactive":
        action = part.get("action") or {}
        if part.get("type") == "button" and not 1 <= len(action.get("buttons") or []) <= 3:
            return "interactive buttons: 1 to 3"
        if part.get("type") == "list" and not action.get("sections"):
            return "interactive list: sections are required"
        if part.get("type") not in ("button", "list"):
            return "interactive.type must be button or list"
    else:
        return f"unsupported type {kind!r}"
    return None


class GraphSandbox:
    """In-memory state of the stand-in; one per app."""

    def __init__(self, history: int = 100_000, media_history: int = 1_000):
        self.sent: deque[SentMessage] = deque(maxlen=history)
        self.media: OrderedDict[str, _Media] = OrderedDict()
        self.media_history = media_history
        self.downloads = 0
        self.read_marks: list[dict[str, Any]] = []
        self.failures: list[FailureRule] = []
        self.attempts = 0
        self.attempt_log: list[tuple[float, str, int | None]] = []  # (time, to, error code)
        self._seq = 0
        self._changed = asyncio.Condition()

    def next_failure(self, phone_number_id: str | None, on: str = "send") -> int | None:
        for rule in self.failures:
            if rule.on != on or rule.times <= 0:
                continue
            if phone_number_id is None or rule.phone_number_id in (None, phone_number_id):
                rule.times -= 1
                return rule.code
        return None

    async def record(self, phone_number_id: str, body: dict[str, Any]) -> SentMessage:
        self._seq += 1
        kind = str(body.get("type", "text"))
        if kind == "text":
            text = (body.get("text") or {}).get("body")
        elif kind == "interactive":
            text = ((body.get("interactive") or {}).get("body") or {}).get("text")
        else:
            text = f"[template {(body.get('template') or {}).get('name')}]"
        message = SentMessage(
            seq=self._seq,
            received_at=time.time(),
            phone_number_id=phone_number_id,
            to=str(body["to"]),
            type=kind,
            text=text,
            wamid="wamid." + base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("="),
            body=body,
        )
        self.sent.append(message)
        async with self._changed:
            self._changed.notify_all()
        return message

    def add_media(
        self, data: bytes, mime_type: str, sha256: str | None, file_size: int | None
    ) -> UploadedMedia:
        info = UploadedMedia(
            id=str(secrets.randbelow(9 * 10**15) + 10**15),  # Meta's media ids are 16 digits
            mime_type=mime_type,
            sha256=sha256 or hashlib.sha256(data).hexdigest(),
            file_size=len(data) if file_size is None else file_size,
        )
        self.media[info.id] = _Media(info, data)
        while len(self.media) > self.media_history:
            self.media.popitem(last=False)
        return info

    async def wait_for(self, after: int, to: str | None, timeout: float) -> list[SentMessage]:
        def matching() -> list[SentMessage]:
            return [m for m in self.sent if m.seq > after and (to is None or m.to == to)]

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: bool(matching())), timeout)
            except TimeoutError:
                pass
        return matching()


def create_app(sandbox: GraphSandbox | None = None) -> FastAPI:
    sandbox = sandbox or GraphSandbox()
    app = FastAPI(title="TaskPilot Graph API sandbox", version="0.1.0")
    app.state.sandbox = sandbox

    @app.post("/{version}/{phone_number_id}/messages")
    async def messages(
        version: str,
        phone_number_id: str,
        request: Request,
        authorization: str = Header(default=""),
    ) -> JSONResponse:
        sandbox.attempts += 1
        if not authorization.startswith("Bearer ") or len(authorization) <= 7:
            return meta_error(190, "missing or malformed access token")
        try:
            body = await request.json()
        except ValueError:
            return meta_error(100, "body is not JSON")
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return meta_error(100, "messaging_product must be 'whatsapp'")
        if body.get("status") == "read":
            sandbox.read_marks.append(body)
            return JSONResponse({"success": True})
        code = sandbox.next_failure(phone_number_id)
        sandbox.attempt_log.append((time.time(), str(body.get("to")), code))
        if code is not None:
            return meta_error(code)
        problem = invalid_send(body)
        if problem:
            return meta_error(100, problem)
        sent = await sandbox.record(phone_number_id, body)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": sent.to, "wa_id": sent.to}],
                "messages": [{"id": sent.wamid}],
            }
        )

    @app.get("/_sandbox/messages")
    async def sent_messages(
        after: int = 0, to: str | None = None, wait: float = 0.0
    ) -> list[SentMessage]:
        """Sends recorded after ``after``; with ``wait`` > 0, long-polls until one arrives."""
        if wait > 0:
            return await sandbox.wait_for(after, to, min(wait, 30.0))
        return [m for m in sandbox.sent if m.seq > after and (to is None or m.to == to)]

    @app.post("/_sandbox/failures")
    async def add_failure(rule: FailureRule) -> dict[str, int]:
        """Make the next ``times`` sends fail with Meta error ``code``."""
        if rule.times < 0:
            raise HTTPException(422, "times must be >= 0")
        sandbox.failures.append(rule)
        return {"pending_rules": len(sandbox.failures)}

    @app.delete("/_sandbox/failures")
    async def clear_failures() -> dict[str, int]:
        sandbox.failures.clear()
        return {"pending_rules": 0}

    @app.get("/_sandbox/attempts")
    async def attempts(to: str | None = None) -> list[dict[str, Any]]:
        """Every send attempt with its time and the error it was answered with (if any)."""
        return [
            {"at": at, "to": who, "code": code}
            for at, who, code in sandbox.attempt_log
            if to is None or who == to
        ]

    @app.get("/_sandbox/read-marks")
    async def read_marks() -> list[dict[str, Any]]:
        return sandbox.read_marks

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, int]:
        return {
            "attempts": sandbox.attempts,
            "sent": len(sandbox.sent),
            "media_downloads": sandbox.downloads,
        }

    @app.post("/_sandbox/media")
    async def upload_media(
        request: Request,
        mime_type: str | None = None,
        sha256: str | None = Query(None, description="advertise this sha256 instead (tests)"),
        file_size: int | None = Query(None, description="advertise this size instead (tests)"),
    ) -> UploadedMedia:
        """Keep the raw body as a lead's media; its id goes into a webhook's ``image.id`` etc."""
        data = await request.body()
        kind = mime_type or request.headers.get("content-type") or "application/octet-stream"
        return sandbox.add_media(data, kind, sha256, file_size)

    @app.get("/whatsapp_business/attachments/", include_in_schema=False)
    async def download_media(mid: str = "", authorization: str = Header(default="")) -> Response:
        """The download URL handed out by the media look-up: bytes only with a bearer token."""
        if not authorization.startswith("Bearer ") or len(authorization) <= 7:
            return Response(status_code=401)
        media = sandbox.media.get(mid)
        if media is None:
            return Response(status_code=404)
        sandbox.downloads += 1
        return Response(media.data, media_type=media.info.mime_type)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    # Last: its two free segments would otherwise shadow every /_sandbox/... GET.
    @app.get("/{version}/{media_id}")
    async def media_url(
        version: str, media_id: str, request: Request, authorization: str = Header(default="")
    ) -> JSONResponse:
        """Meta's media look-up: a URL valid for five minutes, the type, hash and size."""
        if not authorization.startswith("Bearer ") or len(authorization) <= 7:
            return meta_error(190, "missing or malformed access token")
        code = sandbox.next_failure(None, on="media")
        if code is not None:
            return meta_error(code)
        media = sandbox.media.get(media_id)
        if media is None:
            return meta_error(
                100,
                f"Unsupported get request. Object with ID '{media_id}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation",
            )
        expires = int(time.time()) + 300
        url = (
            f"{str(request.base_url).rstrip('/')}/whatsapp_business/attachments/"
            f"?mid={media_id}&ext={expires}&hash={secrets.token_urlsafe(16)}"
        )
        return JSONResponse(
            {"url": url, **media.info.model_dump(), "messaging_product": "whatsapp"}
        )

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8099")))
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
