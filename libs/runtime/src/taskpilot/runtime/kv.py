"""JetStream KV buckets (leases, the send ledger, the spend ledger, the semantic cache) with the
deployment's replica count, ``TASKPILOT_STREAM_REPLICAS``, like the streams."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)


async def key_value(
    js: JetStreamContext,
    bucket: str,
    *,
    replicas: int = 1,
    history: int = 1,
    ttl: float | None = None,
) -> KeyValue:
    """Open ``bucket``, creating it with ``replicas`` when missing; safe when several processes
    start together.

    An existing bucket keeps its replica count: a service's NATS user may create a bucket but
    not change it (see :mod:`taskpilot.runtime.permissions`). A bucket created before the
    setting was raised is reported, with the command an operator runs once to fix it."""
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        try:
            return await js.create_key_value(
                bucket=bucket, history=history, ttl=ttl, replicas=replicas
            )
        except BadRequestError:  # another process created it first
            kv = await js.key_value(bucket)
    have = (await kv.status()).stream_info.config.num_replicas or 1
    if have != replicas:
        log.warning(
            "KV bucket %s has %d replica(s) but TASKPILOT_STREAM_REPLICAS is %d: run "
            "`nats stream edit KV_%s --replicas %d` as the NATS admin",
            bucket,
            have,
            replicas,
            bucket,
            replicas,
        )
    return kv
