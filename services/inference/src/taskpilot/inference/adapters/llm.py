"""The LLM provider port and its LiteLLM adapter.

LiteLLM is imported once, lazily, and only when a remote model is configured: its import costs
4-5 s and ~200 MB, which the embedded default (no remote model) never pays. Its cost map is
the bundled local copy (``LITELLM_LOCAL_MODEL_COST_MAP``), so nothing reaches for the network;
prices for models the map lacks are registered from the configuration.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from taskpilot.inference.settings import ModelsConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRequest:
    tier: str
    """The model group to ask first: ``L2`` (cheap) or ``L3`` (premium)."""
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int = 400
    allow_premium: bool = True
    """False drops every fallback into a premium group (the tenant is near its budget)."""
    tenant_id: str = ""


@dataclass(frozen=True)
class ChatToolCall:
    id: str
    name: str
    arguments: str
    """Raw JSON, as the provider sent it (streamed ones reassembled)."""


@dataclass(frozen=True)
class ChatResult:
    content: str | None
    tool_calls: tuple[ChatToolCall, ...]
    model: str
    """The model that answered (after any retries and fallbacks)."""
    tier: str
    """The tier of the group that answered: ``L2`` or ``L3``."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ModelError(Exception):
    """Base of the port's errors."""


class ModelUnavailableError(ModelError):
    """Every deployment and fallback failed (rate limits, 5xx, timeouts, connection)."""


class ContextTooLongError(ModelError):
    """The prompt fits no model of the chain, context-window fallbacks included."""


class ModelRequestError(ModelError):
    """A provider refused the request itself (credentials, a bad request): retrying won't help."""


class ChatModel(Protocol):
    """A chat-completion provider with tiers (the LLM provider port).

    ``complete`` asks the group named by ``request.tier`` and returns the first answer the
    provider chain produced, with its token counts and its cost in USD. Retries, cooldowns and
    fallbacks between deployments happen inside; when ``request.allow_premium`` is false no
    premium group is used, not even as a fallback. It raises :class:`ModelUnavailableError`,
    :class:`ContextTooLongError` or :class:`ModelRequestError`, never a provider's own error.
    Tool calls come back whole even when streamed (arguments reassembled from the chunks).
    """

    @property
    def tiers(self) -> frozenset[str]:
        """The tiers that have at least one deployment."""
        ...

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    async def close(self) -> None: ...


_import_lock = threading.Lock()


def import_litellm() -> ModuleType:
    """The litellm module, imported once per process with the local cost map."""
    with _import_lock:
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetch the price map
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        # Each failure is logged once by the cascade with the tenant and turn; LiteLLM's own
        # router logs every retry and fallback at ERROR with stack-like detail.
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        return litellm


def _key(name: str | None, api_base: str | None, env: Mapping[str, str]) -> dict[str, str]:
    key = env.get(name, "") if name else ""
    if key:
        return {"api_key": key}
    # A local OpenAI-compatible server (Ollama, llama.cpp, vLLM) wants no key, but the OpenAI
    # client refuses to start without one.
    return {"api_key": "unused"} if api_base else {}


class LiteLLMChatModel:
    """The port on ``litellm.Router`` (async): model lists, retries, cooldowns, fallbacks and
    context-window fallbacks all come from :class:`ModelsConfig`."""

    def __init__(self, config: ModelsConfig, environ: Mapping[str, str] | None = None):
        self._litellm = import_litellm()
        env = os.environ if environ is None else environ
        self._config = config
        self._tier_of_group = config.tier_of_groups()
        self._deployments = {d.deployment_id(i): d for i, d in enumerate(config.deployments)}
        self._register_prices()
        model_list = [
            {
                "model_name": d.group_name,
                "litellm_params": {
                    "model": d.model,
                    **({"api_base": d.api_base} if d.api_base else {}),
                    **_key(d.api_key_env, d.api_base, env),
                    "timeout": d.timeout_s or config.timeout_s,
                    "max_retries": 0,  # the Router retries; the SDK's own would multiply them
                    **({"rpm": d.rpm} if d.rpm else {}),
                    **({"tpm": d.tpm} if d.tpm else {}),
                    **({"weight": d.weight} if d.weight else {}),
                },
                "model_info": {"id": key},
            }
            for key, d in self._deployments.items()
        ]
        self._router = self._litellm.Router(
            model_list=model_list,
            num_retries=config.num_retries,
            timeout=config.timeout_s,
            retry_after=config.retry_after_s,
            cooldown_time=config.cooldown_s,
            allowed_fails=config.allowed_fails,
            fallbacks=[{g: t} for g, t in config.fallbacks.items()],
            context_window_fallbacks=[{g: t} for g, t in config.context_window_fallbacks.items()],
            enable_weighted_failover=True,
        )

    def _register_prices(self) -> None:
        prices = {
            d.model: {
                "input_cost_per_token": d.input_cost_per_token,
                "output_cost_per_token": d.output_cost_per_token or 0.0,
                "litellm_provider": d.model.split("/", 1)[0],
                "mode": "chat",
                **({"max_input_tokens": d.max_input_tokens} if d.max_input_tokens else {}),
            }
            for d in self._config.deployments
            if d.input_cost_per_token is not None
        }
        if prices:
            self._litellm.register_model(prices)

    @property
    def tiers(self) -> frozenset[str]:
        return frozenset(self._tier_of_group[d.group_name] for d in self._deployments.values())

    def _fallbacks(self, request: ChatRequest, table: dict[str, list[str]]) -> list[dict[str, Any]]:
        def allowed(group: str) -> bool:
            return request.allow_premium or self._tier_of_group.get(group) != "L3"

        return [
            {g: [t for t in targets if allowed(t)]}
            for g, targets in table.items()
            if allowed(g) and any(allowed(t) for t in targets)
        ]

    async def complete(self, request: ChatRequest) -> ChatResult:
        lm = self._litellm
        kwargs: dict[str, Any] = {
            "model": request.tier,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "fallbacks": self._fallbacks(request, self._config.fallbacks),
            "context_window_fallbacks": self._fallbacks(
                request, self._config.context_window_fallbacks
            ),
            "metadata": {"tenant_id": request.tenant_id},
        }
        if request.tools:
            kwargs["tools"] = request.tools
        started = time.perf_counter()
        try:
            if self._config.stream:
                stream = await self._router.acompletion(
                    **kwargs, stream=True, stream_options={"include_usage": True}
                )
                chunks = [chunk async for chunk in stream]
                response = lm.stream_chunk_builder(chunks, messages=request.messages)
            else:
                response = await self._router.acompletion(**kwargs)
        except lm.ContextWindowExceededError as exc:
            raise ContextTooLongError(str(exc)[:300]) from None
        except (
            lm.AuthenticationError,
            lm.PermissionDeniedError,
            lm.BadRequestError,
            lm.NotFoundError,
            lm.UnprocessableEntityError,
        ) as exc:
            raise ModelRequestError(f"{type(exc).__name__}: {str(exc)[:300]}") from None
        except (
            lm.RateLimitError,
            lm.Timeout,
            lm.APIConnectionError,
            lm.InternalServerError,
            lm.ServiceUnavailableError,
            lm.APIError,
            lm.BadGatewayError,
        ) as exc:
            raise ModelUnavailableError(f"{type(exc).__name__}: {str(exc)[:300]}") from None
        log.debug("%s answered in %.0f ms", request.tier, (time.perf_counter() - started) * 1000)
        return self._result(response)

    def _result(self, response: Any) -> ChatResult:
        hidden = getattr(response, "_hidden_params", {}) or {}
        deployment = self._deployments.get(str(hidden.get("model_id")))
        group = deployment.group_name if deployment else str(response.model)
        message = response.choices[0].message
        calls = tuple(
            ChatToolCall(c.id, c.function.name, c.function.arguments or "{}")
            for c in (message.tool_calls or [])
        )
        usage = getattr(response, "usage", None)
        cost = hidden.get("response_cost")  # the Router prices every answer already
        if cost is None:
            try:
                cost = self._litellm.completion_cost(completion_response=response)
            except Exception as exc:  # a model with no price: account tokens, warn per call
                log.warning("no price for %s (%r): cost counted as 0", response.model, exc)
                cost = 0.0
        return ChatResult(
            content=message.content,
            tool_calls=calls,
            model=deployment.model if deployment else str(response.model),
            tier=self._tier_of_group.get(group, "L2"),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=float(cost),
        )

    async def close(self) -> None:
        """Nothing to release: LiteLLM's HTTP clients live as long as the process."""
