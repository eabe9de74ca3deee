"""Knowledge base search and versions (owner: knowledge)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import Message


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


class KnowledgeHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["faq", "chunk"]
    title: str
    text: str
    answer: str | None = None
    score: float
    document_id: str | None = None
    position: int | None = None


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
