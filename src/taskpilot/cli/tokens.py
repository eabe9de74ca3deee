"""``taskpilot token``: a dashboard token from the local issuer of the embedded default.

The key is ``{data dir}/auth/local-issuer.pem``, the one analytics verifies with; with
``--url``, the dashboard address that signs in with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from taskpilot.analytics.auth import LocalIssuer

DEFAULT_DASHBOARD = "http://127.0.0.1:8005"
DURATION = re.compile(r"^(\d+)([smhd])$")


def seconds(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r}: use e.g. 30m, 12h or 7d")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def token(
    data_dir: Path, tenant: str | None, roles: list[str], subject: str, ttl: str, url: bool
) -> str:
    issued = LocalIssuer.in_data_dir(data_dir).issue(
        tenant_id=tenant, roles=roles, subject=subject, ttl_s=seconds(ttl)
    )
    if not url:
        return issued
    dev = data_dir / "dev.json"
    base = json.loads(dev.read_text()).get("analytics") if dev.exists() else None
    return f"{base or DEFAULT_DASHBOARD}/#token={issued}"
