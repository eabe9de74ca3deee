"""Shared fixtures live in the runtime's pytest plugin (taskpilot.runtime.testing.plugin)."""
