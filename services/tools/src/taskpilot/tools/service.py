"""Tools use case: execute one tool call, exactly once per tool-call id.

No provider adapters are connected yet (calendar, payments and workflows come with the tools
issue), so every call ends in a structured refusal the model can read — never a fake success.
"""

from __future__ import annotations

from taskpilot.contracts.tools import ExecuteToolCall, ToolCallCompleted
from taskpilot.runtime.bus import Bus
from taskpilot.tools.domain import refusal


class ToolsService:
    def __init__(self, bus: Bus, enabled: dict[str, set[str]] | None = None):
        self._bus = bus
        self._enabled = enabled or {}
        self._available: set[str] = set()

    async def execute(self, call: ExecuteToolCall) -> None:
        error = refusal(call.tool, self._enabled.get(call.tenant_id, set()), self._available)
        await self._bus.publish(
            call.caused(
                ToolCallCompleted,
                conversation_id=call.conversation_id,
                tool_call_id=call.tool_call_id,
                tool=call.tool,
                error=error,
            ),
            msg_id=f"tool:{call.tenant_id}:{call.tool_call_id}",
        )
