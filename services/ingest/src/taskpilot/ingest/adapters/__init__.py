"""Ingest's I/O, one module per port: the Graph API (sends, read marks, media), the ledger of
sends already made, the media object store, and the pipelined publisher of the webhook."""

from taskpilot.ingest.adapters.graph import GraphApi, GraphApiError, WhatsAppApi, WhatsAppMedia
from taskpilot.ingest.adapters.ledger import SendLedger
from taskpilot.ingest.adapters.objects import ObjectNotFoundError, ObjectStore, Obstore
from taskpilot.ingest.adapters.publisher import PipelinedPublisher

__all__ = [
    "GraphApi",
    "GraphApiError",
    "ObjectNotFoundError",
    "ObjectStore",
    "Obstore",
    "PipelinedPublisher",
    "SendLedger",
    "WhatsAppApi",
    "WhatsAppMedia",
]
