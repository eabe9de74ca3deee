"""The OpenAI-compatible stand-in, and LiteLLM adapters configured against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskpilot.inference.settings import ModelDeployment, ModelsConfig
from tests.integration.inference.standin import OpenAIStandIn, running

PRICES = {
    "cheap": (1e-7, 4e-7),
    "cheap-backup": (1e-7, 4e-7),
    "premium": (3e-6, 1.5e-5),
    "long": (5e-7, 1.5e-6),
}


@pytest.fixture(scope="session")
def standin_server() -> Iterator[OpenAIStandIn]:
    with running(OpenAIStandIn()) as standin:
        yield standin


@pytest.fixture
def standin(standin_server: OpenAIStandIn) -> Iterator[OpenAIStandIn]:
    standin_server.reset()
    yield standin_server
    standin_server.reset()


def deployment(standin: OpenAIStandIn, name: str, tier: str, group: str | None = None):
    cost_in, cost_out = PRICES[name]
    return ModelDeployment(
        tier=tier,  # type: ignore[arg-type]
        group=group,
        model=f"openai/{name}",
        api_base=standin.base_url,
        api_key_env="TASKPILOT_TEST_STANDIN_KEY",
        input_cost_per_token=cost_in,
        output_cost_per_token=cost_out,
        max_input_tokens=4096,
    )


def models_config(standin: OpenAIStandIn, *, stream: bool = False, **overrides) -> ModelsConfig:
    """Cheap (L2) and premium (L3) on the stand-in, a long-context group for context-window
    fallbacks, and test-sized timeouts (no waiting between retries)."""
    values = {
        "deployments": [
            deployment(standin, "cheap", "L2"),
            deployment(standin, "premium", "L3"),
            deployment(standin, "long", "L2", group="L2-long"),
        ],
        "fallbacks": {"L3": ["L2"]},
        "context_window_fallbacks": {"L2": ["L2-long"]},
        "num_retries": 1,
        "timeout_s": 0.5,
        "retry_after_s": 0.0,
        "cooldown_s": 0.0,
        "allowed_fails": 1000,
        "stream": stream,
        **overrides,
    }
    return ModelsConfig.model_validate(values)
