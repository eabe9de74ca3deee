"""The payments port and its Stripe adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import stripe

from taskpilot.tools.adapters.errors import ProviderRejectedError, ProviderUnavailableError


@dataclass(frozen=True)
class CheckoutRequest:
    idempotency_key: str
    description: str
    amount_minor: int
    currency: str
    success_url: str
    cancel_url: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class CheckoutLink:
    session_id: str
    url: str
    amount_minor: int
    currency: str


class Payments(Protocol):
    """Creates hosted payment pages for one tenant's account.

    ``create_checkout`` is idempotent by ``request.idempotency_key``: the same key returns the
    same session (the provider keeps keys for a day; the service keeps results forever).
    ``metadata`` comes back in the provider's payment webhooks.
    """

    name: str

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink: ...


class StripePayments:
    """Stripe Checkout Sessions through stripe-python's async client."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient):
        self._client = client

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        params: dict[str, Any] = {
            "mode": "payment",
            "success_url": request.success_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_minor,
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "metadata": request.metadata,
            "client_reference_id": request.metadata.get("conversation_id") or None,
            "payment_intent_data": {"metadata": request.metadata},
        }
        if request.cancel_url:
            params["cancel_url"] = request.cancel_url
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params={k: v for k, v in params.items() if v is not None},  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailableError(self.name, str(exc)) from exc
        except stripe.StripeError as exc:
            # 409: the same idempotency key is in flight (a concurrent redelivery): retry.
            if exc.http_status is None or exc.http_status >= 500 or exc.http_status == 409:
                raise ProviderUnavailableError(self.name, str(exc)) from exc
            raise ProviderRejectedError(self.name, str(exc)) from exc
        return CheckoutLink(
            session_id=session.id,
            url=str(session.url),
            amount_minor=int(session.amount_total or request.amount_minor),
            currency=str(session.currency or request.currency),
        )


def stripe_client(api_key: str, api_base: str | None) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,  # retries are the consumer policy's, with its backoff
    )
