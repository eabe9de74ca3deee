"""Ingest's I/O: the Graph API client, the ledger of sends already made, the media store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import obstore
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from taskpilot.ingest.media import MediaInfo, MediaTooLargeError

if TYPE_CHECKING:  # typing-only names of obstore
    from obstore.store import ClientConfig, S3Config


class GraphApiError(Exception):
    """Meta answered with an error object (decisions are made on ``code``, not the status)."""

    def __init__(self, code: int | None, http_status: int | None, message: str):
        super().__init__(f"Graph API error {code} (HTTP {http_status}): {message}")
        self.code = code
        self.http_status = http_status
        self.message = message


class WhatsAppApi(Protocol):
    """The WhatsApp Cloud API send surface (Meta's Graph API, or the sandbox stand-in)."""

    async def send(self, phone_number_id: str, token: str, body: dict[str, Any]) -> str:
        """Send a ``/messages`` body (text, interactive, template); returns Meta's wamid.

        Raises :class:`GraphApiError` with Meta's ``error.code``."""
        ...

    async def mark_read(self, phone_number_id: str, token: str, wamid: str, typing: bool) -> None:
        """Mark an inbound message read, optionally showing the typing indicator."""
        ...


class WhatsAppMedia(Protocol):
    """The WhatsApp Cloud API media surface (Meta's Graph API, or the sandbox stand-in)."""

    async def media_info(self, media_id: str, token: str) -> MediaInfo:
        """``GET /{version}/{media_id}``: the short-lived download URL and what Meta knows of
        the file. Raises :class:`GraphApiError` with Meta's ``error.code``."""
        ...

    async def download(self, url: str, token: str, limit: int) -> bytes:
        """``GET url`` with the bearer token. Raises :class:`MediaTooLargeError` as soon as
        more than ``limit`` bytes arrive, :class:`GraphApiError` when the download fails."""
        ...


class GraphApi:
    def __init__(self, client: httpx.AsyncClient, base_url: str, version: str):
        self._client = client
        self._base = base_url.rstrip("/")
        self._version = version

    async def _post(self, phone_number_id: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        return await self._call("POST", url, token, json=body)

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(
                method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
        except httpx.HTTPError as exc:  # timeouts, refused connections: transient
            raise GraphApiError(None, None, repr(exc)) from exc
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            data = {}
        if response.status_code >= 400 or "error" in data:
            error = data.get("error") or {}
            raise GraphApiError(
                error.get("code"),
                response.status_code,
                str(error.get("message", response.text[:200])),
            )
        return data

    async def send(self, phone_number_id: str, token: str, body: dict[str, Any]) -> str:
        data = await self._post(phone_number_id, token, body)
        try:
            return str(data["messages"][0]["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise GraphApiError(None, 200, f"no message id in response: {data!r}") from exc

    async def mark_read(self, phone_number_id: str, token: str, wamid: str, typing: bool) -> None:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
        }
        if typing:
            body["typing_indicator"] = {"type": "text"}
        await self._post(phone_number_id, token, body)

    async def media_info(self, media_id: str, token: str) -> MediaInfo:
        data = await self._call("GET", f"{self._base}/{self._version}/{media_id}", token)
        try:
            size = data.get("file_size")
            return MediaInfo(
                media_id=str(data.get("id", media_id)),
                url=str(data["url"]),
                mime_type=str(data.get("mime_type") or "application/octet-stream"),
                sha256=str(data["sha256"]) if data.get("sha256") else None,
                file_size=int(size) if size is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphApiError(None, 200, f"unreadable media object: {data!r}"[:300]) from exc

    async def download(self, url: str, token: str, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    body = (await response.aread())[:300].decode(errors="replace")
                    raise GraphApiError(_error_code(body), response.status_code, body)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise MediaTooLargeError(int(declared), limit, "media")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise MediaTooLargeError(size, limit, "media")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise GraphApiError(None, None, f"download failed: {exc!r}") from exc
        return b"".join(chunks)


def _error_code(body: str) -> int | None:
    try:
        code = json.loads(body).get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


class SendLedger:
    """Command id -> wamid of sends Meta accepted (JetStream KV), so a redelivered command
    never reaches Meta twice."""

    BUCKET = "ingest_sends"

    def __init__(self, kv: KeyValue):
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> SendLedger:
        try:
            kv = await js.key_value(cls.BUCKET)
        except Exception:
            kv = await js.create_key_value(bucket=cls.BUCKET, history=1)
        return cls(kv)

    async def wamid_of(self, command_id: str) -> str | None:
        try:
            entry = await self._kv.get(command_id)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def record(self, command_id: str, wamid: str) -> None:
        await self._kv.put(command_id, wamid.encode())


class ObjectStore(Protocol):
    """Where inbound media is kept: a local directory by default, any S3-compatible store by
    configuration. Keys are ``/``-separated paths (``{tenant}/{lead}/{wamid}.jpg``); writing a
    key again replaces the object whole (a reader never sees half of one)."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; raises :class:`ObjectNotFoundError` when there is none."""
        ...

    async def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing one that is not there is not an error."""
        ...


class ObjectNotFoundError(KeyError):
    pass


class Obstore:
    """:class:`ObjectStore` on obstore: ``file:///dir`` or ``s3://bucket/prefix`` (endpoint and
    credentials from the ``AWS_*`` environment, or ``s3_config``)."""

    def __init__(self, store: LocalStore | S3Store):
        self._store = store

    @classmethod
    def from_url(
        cls, url: str, *, allow_http: bool = False, s3_config: S3Config | None = None
    ) -> Obstore:
        if url.startswith("file://"):
            Path(url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
            return cls(LocalStore.from_url(url))
        options: ClientConfig = {"allow_http": True} if allow_http else {}
        return cls(S3Store.from_url(url, config=s3_config, client_options=options))

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        # A local file system keeps no content type; S3 keeps it for whoever serves the object.
        if isinstance(self._store, LocalStore):
            await obstore.put_async(self._store, key, data)
        else:
            await obstore.put_async(
                self._store, key, data, attributes={"Content-Type": content_type}
            )

    async def get(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self._store, key)
        except (NotFoundError, FileNotFoundError) as exc:
            raise ObjectNotFoundError(key) from exc
        return bytes(await result.bytes_async())

    async def size_of(self, key: str) -> int | None:
        try:
            meta = await obstore.head_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return None
        return int(meta["size"])

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            pass  # already gone: what the caller wanted
