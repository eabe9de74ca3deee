"""The demo tenant the embedded default starts with, so `make chat` works at once."""

from __future__ import annotations

from pydantic import SecretStr

from taskpilot.tenancy import BusinessProfile, Tenant, TenantSecrets

DEMO_TENANT = "demo"
DEMO_NUMBER = "100000000000001"
DEMO_APP_SECRET = "demo-app-secret"  # noqa: S105 (a sandbox-only, published value)
DEMO_VERIFY_TOKEN = "demo-verify-token"  # noqa: S105
DEMO_ACCESS_TOKEN = "demo-access-token"  # noqa: S105

DEMO_FAQS = [
    (
        "What are your opening hours?",
        "We're open Monday to Friday 9:00–19:00 and Saturday 10:00–14:00. Closed on Sundays.",
    ),
    ("Where are you located?", "You'll find us at Calle Mayor 12, Madrid, next to the metro Sol."),
    (
        "How much does a haircut cost?",
        "A women's cut is 35 €, a men's cut 20 €, and kids under 12 pay 15 €.",
    ),
    ("Do you accept card payments?", "Yes — all major cards, Apple Pay and Google Pay."),
    (
        "Can I cancel or change my appointment?",
        "Yes, free of charge up to 24 hours before your appointment. Just write to us here.",
    ),
]


def demo_tenant() -> Tenant:
    return Tenant(
        id=DEMO_TENANT,
        name="Salón Aurora (demo)",
        profile=BusinessProfile(
            name="Salón Aurora", timezone="Europe/Madrid", languages=["es", "en"]
        ),
        secrets=TenantSecrets(
            app_secret=SecretStr(DEMO_APP_SECRET),
            access_token=SecretStr(DEMO_ACCESS_TOKEN),
            verify_token=SecretStr(DEMO_VERIFY_TOKEN),
        ),
        phone_number_ids=[DEMO_NUMBER],
    )
