"""Every NATS subscription of tools, in one place."""

from __future__ import annotations

from taskpilot.contracts import subjects
from taskpilot.contracts.tools import ExecuteToolCall
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerSpec, subscribe
from taskpilot.tools.service import ToolsService

EXECUTE = ConsumerSpec("tools-execute", subjects.TOOLS, subjects.TOOL_EXECUTE.wildcard())


def register(bus: Bus, service: ToolsService) -> None:
    subscribe(bus, EXECUTE, ExecuteToolCall, service.execute)
