"""The media object store: a local directory by default, any S3-compatible store by
configuration (both through obstore)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

if TYPE_CHECKING:  # typing-only names of obstore
    from obstore.store import ClientConfig, S3Config


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
