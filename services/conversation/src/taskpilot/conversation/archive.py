"""Cold storage of conversations: the ``ArchiveStore`` port, its obstore adapter, and the
archive file format (pure).

One object per conversation, ``{tenant}/conversations/{conversation_id}.json.gz``: gzip of a
JSON document that describes itself (``manifest``: format, ids, counts by event type, first
and last event time, sha256 of the events) and holds every stored event exactly as the event
store had it (version, notification id, topic, and the state bytes in base64), so a restore
puts back the very same rows. Each job also writes ``{tenant}/manifests/{job}.json`` listing
its objects with their sha256.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, ObjectStore, from_url

FORMAT = "taskpilot.conversation-archive/1"


class ArchiveStore(Protocol):
    """Object storage for archived conversations: whole objects by key.

    ``put`` overwrites (a rerun writes the same bytes again), ``get`` returns None for a key
    that is not there, ``delete`` of a missing key is not an error.
    """

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...


class ObjectArchive:
    """``ArchiveStore`` on obstore: a local directory, S3-compatible stores, GCS, Azure."""

    def __init__(self, store: ObjectStore):
        self._store = store

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ObjectArchive:
        """``/path`` or ``file:///path`` (created if missing), ``s3://bucket/prefix``
        (credentials and endpoint from ``options`` or the usual ``AWS_*`` variables), or
        ``memory://``."""
        parts = urlsplit(url)
        if parts.scheme in ("", "file"):
            path = Path(parts.path if parts.scheme else url).resolve()
            path.mkdir(parents=True, exist_ok=True)
            return cls(LocalStore(path))
        return cls(from_url(url, **options))

    async def put(self, key: str, data: bytes) -> None:
        await obstore.put_async(self._store, key, data)

    async def get(self, key: str) -> bytes | None:
        try:
            result = await obstore.get_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return None
        return bytes(await result.bytes_async())

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            pass


def object_key(tenant_id: str, conversation_id: object) -> str:
    return f"{tenant_id}/conversations/{conversation_id}.json.gz"


def manifest_key(tenant_id: str, job_id: object) -> str:
    return f"{tenant_id}/manifests/{job_id}.json"


@dataclass(frozen=True)
class StoredRow:
    """One row of the event store, as stored."""

    version: int
    notification_id: int
    topic: str
    state: bytes
    at: datetime


class ArchiveCorruptError(Exception):
    """An archive object does not match its own manifest (or is not an archive at all)."""


@dataclass(frozen=True)
class Archived:
    manifest: dict[str, Any]
    rows: list[StoredRow]


def events_digest(rows: list[StoredRow]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.version}:{row.notification_id}:{row.topic}:".encode())
        digest.update(row.state)
    return digest.hexdigest()


def encode(tenant_id: str, lead: str, conversation_id: str, rows: list[StoredRow]) -> bytes:
    manifest = {
        "format": FORMAT,
        "tenant_id": tenant_id,
        "lead": lead,
        "conversation_id": conversation_id,
        "events": len(rows),
        "last_version": rows[-1].version,
        "counts": dict(Counter(r.topic.rsplit(".", 1)[-1] for r in rows)),
        "first_at": rows[0].at.isoformat(),
        "last_at": rows[-1].at.isoformat(),
        "events_sha256": events_digest(rows),
        "event_fields": {
            "version": "originator_version in the event store",
            "notification_id": "position in the store's notification log when archived",
            "topic": "eventsourcing topic of the event class",
            "at": "the event's timestamp",
            "state": "base64 of the stored state (eventsourcing JSON transcoding)",
        },
    }
    events = [
        {
            "version": r.version,
            "notification_id": r.notification_id,
            "topic": r.topic,
            "at": r.at.isoformat(),
            "state": base64.b64encode(r.state).decode(),
        }
        for r in rows
    ]
    document = json.dumps({"manifest": manifest, "events": events}, separators=(",", ":"))
    return gzip.compress(document.encode(), compresslevel=6, mtime=0)


def decode(data: bytes) -> Archived:
    """Read an archive object and check it against its own manifest."""
    try:
        document = json.loads(gzip.decompress(data))
        manifest = document["manifest"]
        rows = [
            StoredRow(
                e["version"],
                e["notification_id"],
                e["topic"],
                base64.b64decode(e["state"]),
                datetime.fromisoformat(e["at"]),
            )
            for e in document["events"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveCorruptError(f"not a readable archive: {exc!r}") from exc
    if manifest.get("format") != FORMAT:
        raise ArchiveCorruptError(f"unknown format {manifest.get('format')!r}")
    if len(rows) != manifest["events"] or events_digest(rows) != manifest["events_sha256"]:
        raise ArchiveCorruptError("events do not match the manifest")
    return Archived(manifest, rows)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
