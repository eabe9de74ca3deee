"""Test rig: fixtures that start real servers, and helpers that wait on conditions."""

from taskpilot.runtime.testing.processes import ServiceProcess, eventually, python

__all__ = ["ServiceProcess", "eventually", "python"]
