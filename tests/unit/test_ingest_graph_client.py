"""The Graph API client against local HTTP servers: what each kind of failure becomes.

The sender's retry decisions read ``GraphApiError.code`` (Meta's error code; ``None`` when no
answer came back), so a refused connection, a hung server, an HTML 502 from a proxy and Meta's
own error object must each arrive as the right error, never as an unhandled exception.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from taskpilot.ingest.adapters.graph import GraphApi, GraphApiError
from taskpilot.ingest.media import MediaTooLargeError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local servers are reached directly, whatever proxy the machine names."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def session() -> AsyncIterator[object]:
    client = GraphApi.session(timeout_s=2.0)
    yield client
    await client.close()


async def test_a_send_returns_metas_message_id_and_carries_the_token(serve, session) -> None:
    seen: list[tuple[str, str, dict[str, object]]] = []

    async def messages(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers["Authorization"], await request.json()))
        return web.json_response({"messaging_product": "whatsapp", "messages": [{"id": "wamid.1"}]})

    api = GraphApi(session, await serve(messages), "v21.0")
    body = {"messaging_product": "whatsapp", "to": "346", "type": "text", "text": {"body": "hi"}}

    assert await api.send("555", "tok", body) == "wamid.1"
    assert seen == [("/v21.0/555/messages", "Bearer tok", body)]


async def test_metas_error_object_gives_its_code_and_status(serve, session) -> None:
    async def rate_limited(request: web.Request) -> web.Response:
        error = {"message": "Rate limit hit", "type": "OAuthException", "code": 130429}
        return web.json_response({"error": error}, status=400)

    api = GraphApi(session, await serve(rate_limited), "v21.0")
    with pytest.raises(GraphApiError) as caught:
        await api.mark_read("555", "tok", "wamid.A", typing=True)

    assert (caught.value.code, caught.value.http_status) == (130429, 400)
    assert caught.value.message == "Rate limit hit"


async def test_a_proxys_html_error_keeps_the_status_and_the_start_of_the_body(
    serve, session
) -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>502 Bad Gateway</html>" + "x" * 500)

    api = GraphApi(session, await serve(bad_gateway), "v21.0")
    with pytest.raises(GraphApiError) as caught:
        await api.send("555", "tok", {"to": "346"})

    assert (caught.value.code, caught.value.http_status) == (None, 502)
    assert caught.value.message.startswith("<html>502 Bad Gateway</html>")
    assert len(caught.value.message) == 200


async def test_a_200_without_a_message_id_is_an_error_not_a_crash(serve, session) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(["not", "an", "object"]))

    api = GraphApi(session, await serve(odd), "v21.0")
    with pytest.raises(GraphApiError, match="no message id"):
        await api.send("555", "tok", {"to": "346"})


async def test_a_refused_connection_is_transient(session) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = GraphApi(session, f"http://127.0.0.1:{port}", "v21.0")

    with pytest.raises(GraphApiError) as caught:
        await api.send("555", "tok", {"to": "346"})
    assert (caught.value.code, caught.value.http_status) == (None, None)


async def test_a_server_that_never_answers_times_out_as_transient(serve) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    session = GraphApi.session(timeout_s=0.3)
    try:
        api = GraphApi(session, await serve(hang), "v21.0")
        with pytest.raises(GraphApiError) as caught:
            await api.send("555", "tok", {"to": "346"})
    finally:
        never.set()  # let the server's handler end, so the server stops at once
        await session.close()
    assert (caught.value.code, caught.value.http_status) == (None, None)
    assert "Timeout" in caught.value.message


async def test_a_redirect_is_not_followed(serve, session) -> None:
    async def moved(request: web.Request) -> web.Response:
        if request.path.endswith("/messages"):
            raise web.HTTPFound("/elsewhere")
        return web.json_response({"messages": [{"id": "wamid.elsewhere"}]})

    api = GraphApi(session, await serve(moved), "v21.0")
    with pytest.raises(GraphApiError) as caught:
        await api.send("555", "tok", {"to": "346"})
    assert (caught.value.code, caught.value.http_status) == (None, 302)


async def test_media_download_stops_at_the_declared_size_before_reading(serve, session) -> None:
    stalled = asyncio.Event()

    async def declared(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1_000_000  # says a megabyte, sends a little, then stalls
        await response.prepare(request)
        await response.write(b"x" * 1000)
        await stalled.wait()
        return response

    api = GraphApi(session, "http://unused", "v21.0")
    try:
        with pytest.raises(MediaTooLargeError):
            await api.download(await serve(declared) + "/media", "tok", limit=4096)
    finally:
        stalled.set()


async def test_media_download_stops_once_more_than_the_limit_streamed(serve, session) -> None:
    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no content-length to go by
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    api = GraphApi(session, "http://unused", "v21.0")
    with pytest.raises(MediaTooLargeError):
        await api.download(await serve(streamed) + "/media", "tok", limit=4096)


async def test_the_timeout_bounds_each_step_not_a_whole_download() -> None:
    """A large file on a slow link keeps arriving for longer than the timeout: only getting a
    connection and each read are bounded (the hung-server test shows a read timing out)."""
    session = GraphApi.session(timeout_s=0.3)
    try:
        timeout = session.timeout
        assert timeout.total is None
        assert (timeout.connect, timeout.sock_connect, timeout.sock_read) == (0.3, 0.3, 0.3)
    finally:
        await session.close()


async def test_a_failed_download_gives_metas_code(serve, session) -> None:
    async def expired(request: web.Request) -> web.Response:
        error = {"message": "Access token has expired", "code": 190, "error_data": "d" * 2000}
        return web.json_response({"error": error}, status=401)

    api = GraphApi(session, "http://unused", "v21.0")
    with pytest.raises(GraphApiError) as caught:
        await api.download(await serve(expired) + "/media", "tok", limit=4096)
    assert (caught.value.code, caught.value.http_status) == (190, 401)


async def test_an_egress_proxy_from_the_environment_carries_the_calls(
    serve, session, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def proxy(request: web.Request) -> web.Response:  # a forward proxy sees the full URL
        asked.append(str(request.url))
        return web.json_response({"messages": [{"id": "wamid.via-proxy"}]})

    with socket.socket() as sock:  # Graph itself is unreachable: only the proxy answers
        sock.bind(("127.0.0.1", 0))
        graph = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", await serve(proxy))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert await GraphApi(session, graph, "v21.0").send("555", "tok", {}) == "wamid.via-proxy"
    assert asked == [f"{graph}/v21.0/555/messages"]

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # exempt: straight to Graph, which refuses
    with pytest.raises(GraphApiError):
        await GraphApi(session, graph, "v21.0").send("555", "tok", {})
    assert len(asked) == 1
