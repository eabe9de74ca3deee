"""Knowledge decisions and shapes. No I/O."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

_NS = uuid.UUID("a1d2c3b4-0000-4000-8000-00000000cafe")


class FaqIn(BaseModel):
    question: str = Field(min_length=1, max_length=1000)
    answer: str = Field(min_length=1, max_length=4000)


class Faq(FaqIn):
    id: str
    tenant_id: str


class VectorPoint(BaseModel):
    """What the vector store keeps for one searchable item."""

    id: str
    item_id: str
    tenant_id: str
    kind: str
    title: str
    text: str
    answer: str | None = None
    document_id: str | None = None
    position: int | None = None
    embedding_model: str
    vector: list[float]


def point_id(tenant_id: str, kind: str, item_id: str) -> str:
    """Deterministic point id: re-indexing an item overwrites, never duplicates."""
    return str(uuid.uuid5(_NS, f"{tenant_id}/{kind}/{item_id}"))


class EmbeddingMismatchError(ValueError):
    """A query vector from another model than the index's: mixing them is meaningless."""
