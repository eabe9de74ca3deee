"""Tool calls (owner: tools). Idempotent by ``tool_call_id``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import Message


class ToolError(BaseModel):
    """A structured error the model can read and recover from."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    retryable: bool = False


class ExecuteToolCall(Message):
    CHANNEL: ClassVar = subjects.TOOL_EXECUTE

    conversation_id: str
    tool_call_id: str
    tool: str
    arguments: dict[str, Any] = {}


class ToolCallCompleted(Message):
    CHANNEL: ClassVar = subjects.TOOL_COMPLETED

    conversation_id: str
    tool_call_id: str
    tool: str
    result: dict[str, Any] | None = None
    error: ToolError | None = None
