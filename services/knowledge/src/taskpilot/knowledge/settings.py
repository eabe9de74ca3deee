from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from taskpilot.knowledge.chunking import ChunkLimits
from taskpilot.knowledge.domain import HybridPolicy
from taskpilot.runtime.auth import GuardedSettings


class KnowledgeSettings(GuardedSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_KNOWLEDGE_", extra="ignore")

    http_port: int = 8003
    qdrant_url: str | None = Field(default=None, validation_alias="QDRANT_URL")
    """A Qdrant server; unset means the embedded store below."""
    vector_store: Literal["edge", "qdrant-local"] = "edge"
    """Embedded store: Qdrant Edge (fast, the default) or qdrant-client's local mode."""
    qdrant_path: str | None = None
    """Embedded store directory; default ``<data_dir>/qdrant``; ``:memory:`` for throwaway."""
    collection: str = "knowledge"
    """Base name; the embedding model and dimension are appended (a new model, a new index)."""
    max_upload_mb: float = 10.0
    max_chunks: int = 5000
    chunk_target_chars: int = 800
    chunk_max_chars: int = 1200
    chunk_overlap_chars: int = 160
    keyword_weight: float = HybridPolicy.keyword_weight
    faq_offset: float = HybridPolicy.faq_offset
    min_score: float = HybridPolicy.min_score
    candidates: int = HybridPolicy.candidates
    embed_batch: int = Field(default=32, ge=1, le=512)
    """Chunks embedded per batch; each batch's vectors and the job's progress commit together."""
    job_lease_s: float = Field(default=30.0, gt=0)
    """How long an indexing job's claim lasts without a heartbeat (renewed every third of it):
    a replica resumes the job of a dead one this long after its last heartbeat."""
    job_sweep_s: float = Field(default=10.0, gt=0)
    """How often a replica looks for indexing jobs whose claim ran out (and once at start)."""
    search_workers: int = Field(default=8, ge=1, le=64)
    """Searches and memory recalls answered at once (they are reads; each waits on the store
    and PostgreSQL, so one at a time made every turn queue behind the others')."""
    reindex_on_start: bool = True
    """Re-embed tenants whose points came from another embedding model."""

    def hybrid_policy(self) -> HybridPolicy:
        return HybridPolicy(
            keyword_weight=self.keyword_weight,
            faq_offset=self.faq_offset,
            min_score=self.min_score,
            candidates=self.candidates,
        )

    def chunk_limits(self) -> ChunkLimits:
        return ChunkLimits(self.chunk_target_chars, self.chunk_max_chars, self.chunk_overlap_chars)
