"""The two ways a provider fails, as every adapter reports them."""

from __future__ import annotations


class ProviderError(Exception):
    def __init__(self, provider: str, message: str):
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderUnavailableError(ProviderError):
    """The provider could not answer now (network, timeout, rate limit, 5xx): retry later."""


class ProviderRejectedError(ProviderError):
    """The provider refused the request for good (credentials, configuration, validation)."""


def raise_for_status(provider: str, status: int, body: str) -> None:
    if status == 429 or status >= 500:
        raise ProviderUnavailableError(provider, f"HTTP {status}: {body[:300]}")
    if status >= 400:
        raise ProviderRejectedError(provider, f"HTTP {status}: {body[:300]}")
