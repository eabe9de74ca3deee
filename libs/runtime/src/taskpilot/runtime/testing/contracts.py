"""A contract for exercising the bus itself (consumer policy tests, the bus benchmark): no
service publishes or consumes it."""

from __future__ import annotations

from typing import ClassVar

from taskpilot.contracts import Message, subjects


class Ping(Message):
    """A small message on the TOOLS stream (any stream would do), as wide as a typical event's
    envelope; ``run`` keeps one test's or benchmark's messages apart from another's."""

    CHANNEL: ClassVar = subjects.Channel("tools.{tenant}.ping_{run}", subjects.TOOLS)

    run: str
    n: int

    def subject_parts(self) -> dict[str, str]:
        return {"run": self.run}
