"""Builds a tenant's adapters from its stored connection."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import stripe

from taskpilot.tools.adapters.automation import HttpWorkflowTrigger, WebhookSender
from taskpilot.tools.adapters.calendars import (
    CalDavCalendar,
    Calendar,
    GoogleCalendar,
    GoogleTokens,
)
from taskpilot.tools.adapters.payments import Payments, StripePayments, stripe_client


class Providers:
    """Builds a tenant's adapters from its stored connection (one instance per process)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        google_api_base: str,
        google_token_url: str,
        stripe_api_base: str | None = None,
        caldav_timeout_s: float = 10.0,
        allow_private_targets: bool = False,
    ):
        self.http = http
        self.google_tokens = GoogleTokens(http, google_token_url)
        self._google_api = google_api_base
        self._stripe_api = stripe_api_base
        self._caldav_timeout = caldav_timeout_s
        self._stripe: dict[str, stripe.StripeClient] = {}
        self._allow_private = allow_private_targets
        self.workflows = HttpWorkflowTrigger(http, allow_private=allow_private_targets)
        self.webhooks = WebhookSender(http, allow_private=allow_private_targets)

    def calendar(
        self, provider: str, settings: dict[str, Any], secrets: dict[str, Any]
    ) -> Calendar:
        if provider == "google":
            return GoogleCalendar(
                self.http,
                self.google_tokens,
                self._google_api,
                calendar_id=settings["calendar_id"],
                client_id=settings["client_id"],
                client_secret=secrets["client_secret"],
                refresh_token=secrets["refresh_token"],
            )
        return CalDavCalendar(
            str(settings["calendar_url"]),
            username=settings.get("username"),
            password=secrets.get("password"),
            timeout=self._caldav_timeout,
            allow_private=self._allow_private,
        )

    def payments(self, secrets: dict[str, Any]) -> Payments:
        key = hashlib.sha256(secrets["api_key"].encode()).hexdigest()
        client = self._stripe.get(key)
        if client is None:
            client = self._stripe[key] = stripe_client(secrets["api_key"], self._stripe_api)
        return StripePayments(client)
