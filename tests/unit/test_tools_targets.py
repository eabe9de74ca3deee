"""Tenant-given URLs may not reach the installation's own network unless allowed."""

from __future__ import annotations

import pytest

from taskpilot.tools.adapters.errors import ProviderRejectedError
from taskpilot.tools.adapters.targets import check_target


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4222/",
        "http://localhost:5432/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[fd00::1]/",
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(ProviderRejectedError, match="non-public"):
        check_target("webhook", url, allow_private=False)


def test_public_addresses_and_allowed_private_ones_pass() -> None:
    check_target("webhook", "https://93.184.215.14/hook", allow_private=False)
    check_target("webhook", "http://127.0.0.1:4222/", allow_private=True)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "http:///nohost"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(ProviderRejectedError, match="http"):
        check_target("webhook", url, allow_private=True)
