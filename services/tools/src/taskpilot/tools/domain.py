"""Which tool calls may run. No I/O."""

from __future__ import annotations

from taskpilot.contracts.tools import ToolError

KNOWN_TOOLS = ("check_availability", "book_slot", "create_payment_link", "trigger_workflow")


def refusal(tool: str, enabled: set[str], available: set[str]) -> ToolError | None:
    """Why this call cannot run, or None when it can. Whatever a lead writes, a tool the
    tenant has not enabled never runs."""
    if tool not in KNOWN_TOOLS:
        return ToolError(code="unknown_tool", message=f"no tool named {tool!r}")
    if tool not in enabled:
        return ToolError(
            code="tool_not_enabled", message=f"{tool} is not enabled for this business"
        )
    if tool not in available:
        return ToolError(code="tool_not_configured", message=f"{tool} has no connected provider")
    return None
