"""Test rig: fixtures that start real servers, and helpers that wait on conditions."""

from taskpilot.runtime.testing.processes import ServiceProcess, eventually

__all__ = ["ServiceProcess", "eventually"]
