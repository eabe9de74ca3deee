"""Shared runtime: settings base, bus, consumer policy, hosting, ops endpoints, telemetry.

Small and free of business logic.
"""
