"""The inference use case with hand-written fakes: bus, tenant directory, embedder, classifier
and the scripted model. What goes to which level, the cache, single-flight, budgets and rate
limits. No network."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from taskpilot.contracts import Message
from taskpilot.contracts.inference import (
    GenerateReply,
    ReplyGenerated,
    TenantBudgetExceeded,
    TenantBudgetNearCap,
    ToolResult,
)
from taskpilot.contracts.knowledge import KnowledgeHit, KnowledgeSearchResult, KnowledgeUpdated
from taskpilot.inference.adapters.cache_store import MemoryCacheStore
from taskpilot.inference.adapters.spend import MemorySpendLedger
from taskpilot.inference.cascade import Cascade
from taskpilot.inference.domain.budget import Budget
from taskpilot.inference.domain.decisions import Thresholds
from taskpilot.inference.domain.intents import IntentGuess
from taskpilot.inference.service import CacheSettings, InferenceService
from taskpilot.inference.spending import Spending
from taskpilot.inference.testing import ScriptedChatModel
from taskpilot.runtime.bus import RequestError
from taskpilot.tenancy import BusinessProfile
from taskpilot.tenancy.buckets import Buckets

PRICES = KnowledgeHit(
    id="c1", kind="chunk", title="Prices", text="Full colour 60 €. Highlights 75 €.", score=0.8
)
HOURS = KnowledgeHit(
    id="f1",
    kind="faq",
    title="What are your opening hours?",
    text="",
    answer="9:00 to 19:00.",
    score=0.97,
)
INTENTS = {"hola": "greeting", "quiero hablar con alguien": "human"}
NOW = 1_800_000_000.0  # 2027-01-15


class WordsEmbedder:
    """Deterministic unit vectors: the same normalised text, the same vector."""

    name = "fake-embedder"
    dim = 16

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows, dtype=np.float32)

    embed_passages = embed_queries


class Classifier:
    def __init__(self) -> None:
        self.vectors = {
            text: WordsEmbedder().embed_queries([text])[0].tobytes() for text in INTENTS
        }

    def guess(self, vector: np.ndarray) -> IntentGuess:
        for text, raw in self.vectors.items():
            if raw == vector.tobytes():
                return IntentGuess(INTENTS[text], 0.99, 0.9)
        return IntentGuess("pricing", 0.5, 0.1)


@dataclass
class Bus:
    hits: list[KnowledgeHit] = field(default_factory=lambda: [PRICES])
    version: int = 1
    down: bool = False
    published: list[Message] = field(default_factory=list)

    async def request(self, message: Message, reply_type: Any, *, timeout: float) -> Any:
        if self.down:
            raise RequestError("no responders")
        return KnowledgeSearchResult(
            hits=self.hits, knowledge_version=self.version, embedding_model="fake-embedder"
        )

    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool:
        self.published.append(message)
        return True

    def of(self, cls: type[Any]) -> list[Any]:
        return [m for m in self.published if isinstance(m, cls)]


class Directory:
    async def get(self, tenant_id: str) -> Any:
        return SimpleNamespace(profile=BusinessProfile(name="Aurora", enabled_tools=["book_slot"]))


def answer(text: str, sources: list[int] | None = None, personal: bool = False) -> str:
    return json.dumps(
        {
            "reply": text,
            "sources": [1] if sources is None else sources,
            "status": "answered",
            "personal": personal,
        }
    )


@dataclass
class Rig:
    bus: Bus
    model: ScriptedChatModel | None
    service: InferenceService
    store: MemoryCacheStore
    spending: Spending

    async def ask(self, text: str, **fields: Any) -> ReplyGenerated:
        command = GenerateReply(
            tenant_id="aurora",
            correlation_id="wamid.1",
            conversation_id="c",
            turn_id=uuid.uuid4().hex[:6],
            lead="346",
            text=text,
            **fields,
        )
        await self.service.generate(command)
        return self.bus.of(ReplyGenerated)[-1]


def build(models: bool = True, budget: Budget | None = None, **spending: Any) -> Rig:
    bus, store = Bus(), MemoryCacheStore()
    model = ScriptedChatModel() if models else None

    async def budget_of(_tenant: str) -> Budget | None:
        return budget

    ledger = Spending(MemorySpendLedger(), budget_of, clock=lambda: NOW, **spending)
    service = InferenceService(
        bus,  # type: ignore[arg-type]
        Directory(),  # type: ignore[arg-type]
        WordsEmbedder(),
        Classifier(),  # type: ignore[arg-type]
        Thresholds(0.9, {"greeting": 0.9, "human": 0.9}),
        1.0,
        cache_settings=CacheSettings(store, 0.99, 3600),
        spending=ledger,
        cascade=Cascade(model) if model else None,
        clock=lambda: NOW,
    )
    return Rig(bus, model, service, store, ledger)


# -- the embedded default: no model -----------------------------------------------------------


async def test_without_models_a_close_faq_and_a_greeting_are_answered_and_the_rest_handed_off():
    rig = build(models=False)
    rig.bus.hits = [HOURS]

    faq = await rig.ask("when do you open?")
    hello = await rig.ask("hola")
    rig.bus.hits = [PRICES]
    other = await rig.ask("how much is a colour?")

    assert (faq.tier, faq.source, faq.text) == ("L1", "faq", "9:00 to 19:00.")
    assert (hello.tier, hello.source) == ("L1", "template")
    assert (other.tier, other.handoff, other.model) == ("fallback", True, "local")
    assert other.handoff_reason == "no grounded answer and no model configured"


async def test_a_request_for_a_person_is_a_level_one_handoff_without_a_model_call():
    rig = build()

    reply = await rig.ask("quiero hablar con alguien")

    assert (reply.tier, reply.handoff) == ("L1", True)
    assert rig.model is not None and rig.model.requests == []


# -- the cache --------------------------------------------------------------------------------


async def test_a_model_answer_is_cached_and_the_same_question_costs_nothing():
    rig = build()
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("A full colour is 60 €.")))

    first = await rig.ask("How much is a full colour?")
    again = await rig.ask("how much is a full colour")

    assert (first.tier, first.cache_hit, first.model) == ("L2", False, "scripted-l2")
    assert (again.tier, again.cache_hit, again.cost_usd, again.text) == (
        "L2",
        True,
        0.0,
        "A full colour is 60 €.",
    )
    assert len(rig.model.requests) == 1 and len(rig.store) == 1


async def test_model_tokens_are_counted_by_tier_model_and_kind_and_a_cache_hit_adds_none():
    def tokens(kind: str) -> float:
        labels = {"tier": "L2", "model": "scripted-l2", "kind": kind}
        return REGISTRY.get_sample_value("taskpilot_inference_tokens_total", labels) or 0.0

    rig = build()
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("Yes, cards too."), 300, 25))
    before = (tokens("prompt"), tokens("completion"))

    first = await rig.ask("Do you take cards?")
    await rig.ask("do you take cards")  # from the cache

    assert (first.prompt_tokens, first.completion_tokens) == (300, 25)
    assert (tokens("prompt") - before[0], tokens("completion") - before[1]) == (300, 25)


async def test_a_new_knowledge_version_is_a_new_scope_and_updates_drop_the_old_one():
    rig = build()
    assert rig.model is not None
    rig.model.queue(
        "L2", rig.model.text("L2", answer("60 €.")), rig.model.text("L2", answer("60 €"))
    )
    await rig.ask("How much is a full colour?")
    rig.bus.version = 2

    again = await rig.ask("How much is a full colour?")
    await rig.service.knowledge_updated(
        KnowledgeUpdated(tenant_id="aurora", correlation_id="k", version=2, change="faq")
    )

    assert not again.cache_hit and len(rig.model.requests) == 2
    assert len(rig.store) == 1  # only the version-2 entry is left


@pytest.mark.parametrize(
    ("text", "fields", "reply_text", "personal"),
    [
        (
            "How much is a full colour?",
            {"round": 1, "tool_results": [ToolResult(call_id="x")]},
            "60 €.",
            False,
        ),
        ("My name is Ana, how much is a full colour?", {}, "60 €.", False),
        ("How much is a full colour?", {}, "60 €, Ana.", True),
    ],
    ids=["tool-round", "personal-question", "model-says-personal"],
)
async def test_tool_turns_and_personal_answers_are_never_cached(text, fields, reply_text, personal):
    rig = build()
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer(reply_text, personal=personal)))

    await rig.ask(text, **fields)

    assert len(rig.store) == 0


async def test_without_the_knowledge_version_nothing_is_cached_but_the_turn_is_answered():
    rig = build()
    assert rig.model is not None
    rig.bus.down = True
    rig.model.queue("L2", rig.model.text("L2", answer("Happy to help!", sources=[])))

    reply = await rig.ask("can you help me?")

    assert reply.text == "Happy to help!" and len(rig.store) == 0


async def test_identical_questions_at_once_are_generated_once():
    rig = build()
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("A full colour is 60 €.")))

    replies_before = len(rig.bus.published)
    await asyncio.gather(*(rig.ask("How much is a full colour?") for _ in range(4)))

    replies = rig.bus.of(ReplyGenerated)[replies_before:]
    assert len(rig.model.requests) == 1
    assert sorted(r.cache_hit for r in replies) == [False, True, True, True]


# -- budget and rate -----------------------------------------------------------------------------


async def test_budget_events_when_crossed_and_no_model_at_the_cap():
    rig = build(budget=Budget(0.00002))
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("A full colour is 60 €.")))

    first = await rig.ask("How much is a full colour?")
    second = await rig.ask("How much are highlights?")

    assert first.cost_usd > 0.00002
    [near], [exceeded] = rig.bus.of(TenantBudgetNearCap), rig.bus.of(TenantBudgetExceeded)
    assert (near.month, exceeded.budget_usd) == ("2027-01", 0.00002)
    assert (second.tier, second.handoff_reason) == ("fallback", "monthly model budget used up")
    assert len(rig.model.requests) == 1


async def test_near_the_cap_premium_is_not_used():
    rig = build(budget=Budget(1.0))
    assert rig.model is not None
    await rig.spending.ledger.add("aurora", "2027-01", 0.85, 0)
    rig.model.queue("L2", rig.model.text("L2", answer("Maybe 99 €")))
    rig.model.queue("L3", rig.model.text("L3", answer("A full colour is 60 €.")))

    reply = await rig.ask("How much is a full colour?")

    assert reply.handoff and [r.tier for r in rig.model.requests] == ["L2"]


async def test_a_tenant_over_its_request_rate_gets_the_holding_reply():
    rig = build(requests=Buckets(0.001, 1), max_wait_s=0.0)
    assert rig.model is not None
    rig.model.queue("L2", rig.model.text("L2", answer("A full colour is 60 €.")))

    await rig.ask("How much is a full colour?")
    limited = await rig.ask("How much are highlights?")

    assert limited.handoff and limited.handoff_reason == "tenant's model rate limit"
    assert len(rig.model.requests) == 1
