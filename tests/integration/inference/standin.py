"""A local OpenAI-compatible chat-completions server, scripted by the tests.

It answers ``POST /v1/chat/completions`` (plain and ``stream: true``) with what a test queued
for the requested model: text, tool calls (streamed with their arguments split over several
chunks), HTTP 429 and 500, a hang (the client's timeout fires), or a context-length error in
OpenAI's shape. Every request body is recorded so tests can read the prompt that was sent.
Loopback only; it runs in a thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from taskpilot.runtime.servers import free_port, wait_until


@dataclass(frozen=True)
class Behaviour:
    kind: str  # text | tool_calls | status | hang | context_length
    content: str = ""
    calls: tuple[tuple[str, str], ...] = ()  # (tool name, raw JSON arguments)
    status: int = 200
    prompt_tokens: int = 120
    completion_tokens: int = 30


def text(content: str, prompt_tokens: int = 120, completion_tokens: int = 30) -> Behaviour:
    return Behaviour(
        "text", content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )


def answer(reply: str, sources: list[int] | None = None, status: str = "answered") -> Behaviour:
    """The JSON reply format the assistant's prompt asks for."""
    return text(json.dumps({"reply": reply, "sources": sources or [], "status": status}))


def tool_calls(*calls: tuple[str, dict[str, Any] | str]) -> Behaviour:
    raw = tuple((n, a if isinstance(a, str) else json.dumps(a)) for n, a in calls)
    return Behaviour("tool_calls", calls=raw)


def status(code: int) -> Behaviour:
    return Behaviour("status", status=code)


HANG = Behaviour("hang")
CONTEXT_TOO_LONG = Behaviour("context_length", status=400)


@dataclass
class OpenAIStandIn:
    script: dict[str, deque[Behaviour]] = field(default_factory=lambda: defaultdict(deque))
    defaults: dict[str, Behaviour | Callable[[dict[str, Any]], Behaviour]] = field(
        default_factory=dict
    )
    requests: list[dict[str, Any]] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""

    def queue(self, model: str, *behaviours: Behaviour) -> None:
        self.script[model].extend(behaviours)

    def reset(self) -> None:
        self.script.clear()
        self.defaults.clear()
        self.requests.clear()

    def calls_to(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == model]

    def _next(self, body: dict[str, Any]) -> Behaviour:
        model = str(body.get("model"))
        if self.script[model]:
            return self.script[model].popleft()
        default = self.defaults.get(model, answer("Default answer from the stand-in."))
        return default(body) if callable(default) else default

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            behaviour = self._next(body)
            if behaviour.kind == "hang":
                while not self.closing.is_set():  # until the client gives up or we stop
                    await asyncio.sleep(0.02)
                return JSONResponse({}, status_code=503)
            if behaviour.kind == "status":
                return _error(behaviour.status)
            if behaviour.kind == "context_length":
                return JSONResponse(
                    {
                        "error": {
                            "message": "This model's maximum context length is 4096 tokens. "
                            "However, your messages resulted in 9000 tokens.",
                            "type": "invalid_request_error",
                            "param": "messages",
                            "code": "context_length_exceeded",
                        }
                    },
                    status_code=400,
                )
            if body.get("stream"):
                return StreamingResponse(
                    _sse(body["model"], behaviour), media_type="text/event-stream"
                )
            return JSONResponse(_completion(body["model"], behaviour))

        return app


def _error(code: int) -> JSONResponse:
    kind = {429: "rate_limit_error", 500: "server_error"}.get(code, "api_error")
    return JSONResponse(
        {"error": {"message": f"stand-in says {code}", "type": kind, "code": str(code)}},
        status_code=code,
    )


def _usage(b: Behaviour) -> dict[str, int]:
    return {
        "prompt_tokens": b.prompt_tokens,
        "completion_tokens": b.completion_tokens,
        "total_tokens": b.prompt_tokens + b.completion_tokens,
    }


def _calls(b: Behaviour) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{i}_{uuid.uuid4().hex[:8]}",
            "type": "function",
            "function": {"name": name, "arguments": args},
        }
        for i, (name, args) in enumerate(b.calls)
    ]


def _completion(model: str, b: Behaviour) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": b.content or None}
    finish = "stop"
    if b.kind == "tool_calls":
        message["tool_calls"] = _calls(b)
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(b),
    }


async def _sse(model: str, b: Behaviour) -> AsyncIterator[bytes]:
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps({**data, **extra})}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    finish = "stop"
    if b.kind == "tool_calls":
        finish = "tool_calls"
        for index, call in enumerate(_calls(b)):
            function = call["function"]
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": function["name"], "arguments": ""},
                        }
                    ]
                }
            )
            args = function["arguments"]
            step = max(1, len(args) // 4)  # the arguments arrive in several pieces
            for start in range(0, len(args), step):
                piece = args[start : start + step]
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    else:
        for start in range(0, len(b.content), 7):
            yield chunk({"content": b.content[start : start + 7]})
    yield chunk({}, finish)
    yield f"data: {json.dumps({**head, 'choices': [], 'usage': _usage(b)})}\n\n".encode()
    yield b"data: [DONE]\n\n"


@contextmanager
def running(standin: OpenAIStandIn) -> Iterator[OpenAIStandIn]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            standin.app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, f"OpenAI stand-in on {port}")
    standin.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield standin
    finally:
        standin.closing.set()
        server.should_exit = True
        thread.join(10)
