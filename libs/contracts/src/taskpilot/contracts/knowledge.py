"""Knowledge base search, versions and lead memory (owner: knowledge).

Changes since the first version are additive (optional fields, new messages), so older readers
keep working: ``KnowledgeHit.score`` is still the dense cosine similarity of the hit.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message
from taskpilot.contracts.subjects import Channel

# Request-reply subjects of lead memory. They belong next to KNOWLEDGE_SEARCH in `subjects`;
# declared here (once) until that module takes them over.
KNOWLEDGE_MEMORY_REMEMBER = Channel("rpc.knowledge.{tenant}.memory.remember", None, "request-reply")
KNOWLEDGE_MEMORY_RECALL = Channel("rpc.knowledge.{tenant}.memory.recall", None, "request-reply")
KNOWLEDGE_MEMORY_ERASE = Channel("rpc.knowledge.{tenant}.memory.erase", None, "request-reply")


class SearchKnowledge(Message):
    """Request-reply: the tenant's most relevant knowledge for a query."""

    CHANNEL: ClassVar = subjects.KNOWLEDGE_SEARCH

    query: str
    vector: list[float] | None = Field(
        default=None, description="Query embedding, when the caller already has one"
    )
    embedding_model: str | None = Field(default=None, description="Model that made `vector`")
    top_k: int = Field(default=3, ge=1, le=50)
    kinds: list[Literal["faq", "chunk"]] = ["faq", "chunk"]
    min_score: float | None = Field(
        default=None,
        description="Drop hits whose rank_score is below this (default: the service's setting)",
    )


class KnowledgeHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["faq", "chunk"]
    title: str
    text: str
    answer: str | None = None
    score: float = Field(description="Cosine similarity of the dense embeddings")
    document_id: str | None = None
    position: int | None = Field(default=None, description="Chunk position in its document")
    source: str | None = Field(default=None, description="Where the document came from")
    keyword_score: float | None = Field(
        default=None, description="Keyword (BM25-style) score; None when no query term matched"
    )
    rank_score: float | None = Field(
        default=None, description="Fused dense + keyword score the hits are ordered by"
    )


class KnowledgeSearchResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    hits: list[KnowledgeHit]
    knowledge_version: int
    embedding_model: str
    error: str | None = None


class KnowledgeUpdated(Message):
    """The tenant's knowledge changed; caches keyed on the old version are stale."""

    CHANNEL: ClassVar = subjects.KNOWLEDGE_UPDATED

    version: int
    change: str
    item_id: str | None = None


class RememberTurn(Message):
    """Request-reply: store a finished turn (lead message and reply) in the lead's memory."""

    CHANNEL: ClassVar = KNOWLEDGE_MEMORY_REMEMBER

    lead: LeadId
    turn_id: str = Field(min_length=1, max_length=200)
    lead_text: str = Field(max_length=8000)
    reply_text: str = Field(default="", max_length=8000)


class RecallMemory(Message):
    """Request-reply: the lead's past turns most relevant to a query."""

    CHANNEL: ClassVar = KNOWLEDGE_MEMORY_RECALL

    lead: LeadId
    query: str
    top_k: int = Field(default=3, ge=1, le=20)
    min_score: float | None = None


class EraseLeadMemory(Message):
    """Request-reply: forget what was remembered about a lead: everything (GDPR erase), or
    only what was remembered before ``before`` (retention)."""

    CHANNEL: ClassVar = KNOWLEDGE_MEMORY_ERASE

    lead: LeadId
    before: datetime | None = None


class MemoryHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    turn_id: str
    lead_text: str
    reply_text: str
    score: float = Field(description="Cosine similarity of the dense embeddings")
    rank_score: float | None = None


class MemoryResult(BaseModel):
    """Answer to the memory requests: hits for a recall, counts for remember and erase."""

    model_config = ConfigDict(frozen=True)

    hits: list[MemoryHit] = []
    stored: int = 0
    erased: int = 0
    error: str | None = None
