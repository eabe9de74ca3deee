"""The LLM provider port's contract, run against every adapter: LiteLLM's Router talking to
the local OpenAI-compatible stand-in (plain and streamed), and the scripted fake the unit
tests use. Then what only a real wire shows: 429, 500, timeouts, context-length errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from taskpilot.inference.adapters.llm import (
    ChatModel,
    ChatRequest,
    ContextTooLongError,
    LiteLLMChatModel,
    ModelUnavailableError,
)
from taskpilot.inference.testing import ScriptedChatModel
from tests.integration.inference.conftest import models_config
from tests.integration.inference.standin import (
    CONTEXT_TOO_LONG,
    HANG,
    OpenAIStandIn,
    answer,
    status,
    text,
    tool_calls,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

MODEL_OF_TIER = {"L2": "cheap", "L3": "premium"}
MESSAGES = [{"role": "user", "content": "What time do you open?"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "book_slot",
        "parameters": {"type": "object", "properties": {"start": {"type": "string"}}},
    },
}


@dataclass
class Rig:
    model: ChatModel
    standin: OpenAIStandIn | None = None
    fake: ScriptedChatModel | None = None

    def text(self, tier: str, content: str) -> None:
        if self.standin is not None:
            self.standin.queue(MODEL_OF_TIER[tier], text(content, 100, 20))
        else:
            assert self.fake is not None
            self.fake.queue(tier, self.fake.text(tier, content, 100, 20))

    def tool_call(self, tier: str, name: str, arguments: dict[str, Any]) -> None:
        if self.standin is not None:
            self.standin.queue(MODEL_OF_TIER[tier], tool_calls((name, arguments)))
        else:
            assert self.fake is not None
            self.fake.queue(tier, self.fake.calls(tier, (name, json.dumps(arguments))))

    def outage(self, tier: str) -> None:
        if self.standin is not None:
            self.standin.queue(MODEL_OF_TIER[tier], *[status(500)] * 4)
        else:
            assert self.fake is not None
            self.fake.queue(tier, ModelUnavailableError(f"{tier} down"))


@pytest.fixture(params=["litellm", "litellm-stream", "scripted"])
def rig(request: pytest.FixtureRequest, standin: OpenAIStandIn) -> Iterator[Rig]:
    if request.param == "scripted":
        fake = ScriptedChatModel(fallbacks={"L3": ["L2"], "L2": ["L3"]})
        yield Rig(fake, fake=fake)
        return
    config = models_config(
        standin,
        stream=request.param.endswith("stream"),
        fallbacks={"L3": ["L2"], "L2": ["L3"]},
        num_retries=0,  # LiteLLM sleeps 0.5 s or more before a retry; retries are tested below
    )
    yield Rig(LiteLLMChatModel(config, environ={}), standin=standin)


def request(tier: str = "L2", **kwargs: Any) -> ChatRequest:
    return ChatRequest(tier, MESSAGES, **kwargs)


async def test_a_text_answer_comes_with_its_tokens_and_cost(rig: Rig) -> None:
    rig.text("L2", "We open at 9.")

    result = await rig.model.complete(request("L2"))

    assert result.content == "We open at 9."
    assert (result.tier, result.prompt_tokens, result.completion_tokens) == ("L2", 100, 20)
    assert result.cost_usd == pytest.approx(100 * 1e-7 + 20 * 4e-7)
    assert result.tool_calls == ()


async def test_premium_costs_premium_prices(rig: Rig) -> None:
    rig.text("L3", "Let me see.")

    result = await rig.model.complete(request("L3"))

    assert result.tier == "L3"
    assert result.cost_usd == pytest.approx(100 * 3e-6 + 20 * 1.5e-5)


async def test_a_tool_call_comes_back_whole(rig: Rig) -> None:
    arguments = {"start": "2026-12-01T10:00:00", "name": "Ana María", "note": "first visit"}
    rig.tool_call("L2", "book_slot", arguments)

    result = await rig.model.complete(request("L2", tools=[TOOL]))

    [call] = result.tool_calls
    assert call.name == "book_slot"
    assert json.loads(call.arguments) == arguments
    assert call.id


async def test_an_outage_falls_back_down_the_chain(rig: Rig) -> None:
    rig.outage("L3")
    rig.text("L2", "From the cheap model.")

    result = await rig.model.complete(request("L3"))

    assert (result.content, result.tier) == ("From the cheap model.", "L2")


async def test_without_premium_no_fallback_reaches_a_premium_model(rig: Rig) -> None:
    rig.outage("L2")
    rig.text("L3", "Premium would have answered.")

    with pytest.raises(ModelUnavailableError):
        await rig.model.complete(request("L2", allow_premium=False))


async def test_with_premium_the_same_outage_is_answered_by_premium(rig: Rig) -> None:
    rig.outage("L2")
    rig.text("L3", "Premium answered.")

    result = await rig.model.complete(request("L2"))

    assert (result.content, result.tier) == ("Premium answered.", "L3")


async def test_an_outage_of_the_whole_chain_is_unavailable(rig: Rig) -> None:
    rig.outage("L3")
    rig.outage("L2")

    with pytest.raises(ModelUnavailableError):
        await rig.model.complete(request("L3"))


# -- only on the wire -------------------------------------------------------------------------


@pytest.fixture
def litellm(standin: OpenAIStandIn) -> LiteLLMChatModel:
    return LiteLLMChatModel(models_config(standin, num_retries=0, timeout_s=0.3), environ={})


async def test_rate_limits_are_retried_then_fall_back(standin: OpenAIStandIn) -> None:
    litellm = LiteLLMChatModel(models_config(standin, num_retries=1), environ={})
    standin.queue("premium", status(429), status(429))
    standin.queue("cheap", answer("ok"))

    result = await litellm.complete(request("L3"))

    assert result.tier == "L2"
    assert [r["model"] for r in standin.requests].count("premium") >= 2  # retried
    assert standin.requests[-1]["model"] == "cheap"


async def test_a_server_error_once_is_retried_on_the_same_tier(standin: OpenAIStandIn) -> None:
    litellm = LiteLLMChatModel(models_config(standin, num_retries=1), environ={})
    standin.queue("cheap", status(500), answer("second time lucky"))

    result = await litellm.complete(request("L2"))

    assert result.tier == "L2" and "second time lucky" in (result.content or "")


async def test_a_hanging_provider_times_out_and_falls_back(
    litellm: LiteLLMChatModel, standin: OpenAIStandIn
) -> None:
    standin.queue("premium", HANG, HANG, HANG)
    standin.queue("cheap", answer("the cheap one was quick"))

    result = await litellm.complete(request("L3"))

    assert result.tier == "L2"


async def test_hanging_everywhere_is_unavailable_not_a_hang(
    litellm: LiteLLMChatModel, standin: OpenAIStandIn
) -> None:
    standin.queue("cheap", *[HANG] * 4)

    with pytest.raises(ModelUnavailableError):
        await litellm.complete(request("L2"))


async def test_a_prompt_too_long_goes_to_the_long_context_group(
    litellm: LiteLLMChatModel, standin: OpenAIStandIn
) -> None:
    standin.queue("cheap", CONTEXT_TOO_LONG)
    standin.queue("long", answer("read it all"))

    result = await litellm.complete(request("L2"))

    assert "read it all" in (result.content or "")
    assert result.model == "openai/long" and result.tier == "L2"


async def test_a_prompt_too_long_for_every_model_is_a_named_error(
    litellm: LiteLLMChatModel, standin: OpenAIStandIn
) -> None:
    standin.queue("cheap", CONTEXT_TOO_LONG)
    standin.queue("long", CONTEXT_TOO_LONG)

    with pytest.raises(ContextTooLongError):
        await litellm.complete(request("L2"))


async def test_streamed_tool_arguments_split_over_chunks_are_reassembled(
    standin: OpenAIStandIn,
) -> None:
    model = LiteLLMChatModel(models_config(standin, stream=True), environ={})
    arguments = {"product": "10-class pass", "quantity": 2, "description": "Two passes, por favor"}
    standin.queue(
        "cheap", tool_calls(("create_payment_link", arguments), ("hand_off", {"reason": "x"}))
    )

    result = await model.complete(request("L2", tools=[TOOL]))

    assert standin.requests[-1]["stream"] is True
    assert [c.name for c in result.tool_calls] == ["create_payment_link", "hand_off"]
    assert json.loads(result.tool_calls[0].arguments) == arguments
    assert result.prompt_tokens == 120 and result.cost_usd > 0
