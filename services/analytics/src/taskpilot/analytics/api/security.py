"""The API's guard: every route but the public ones needs a bearer token (or API key), and a
role that allows the route's action on the tenant in its path (operators: on any tenant).
The same guard protects every service (:mod:`taskpilot.runtime.auth`)."""

from taskpilot.runtime.auth import Guard

__all__ = ["Guard"]
