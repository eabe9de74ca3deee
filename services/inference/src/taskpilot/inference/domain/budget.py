"""Monthly model budget per tenant: what it still allows, and which thresholds a spend crossed.
Pure; the running totals live in the spend ledger (an adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from taskpilot.inference.domain.decisions import Allowance


@dataclass(frozen=True)
class Budget:
    monthly_usd: float
    near_share: float = 0.8
    """From this share of the budget on, premium models are off."""

    @property
    def near_usd(self) -> float:
        return self.monthly_usd * self.near_share


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def allowance(spent_usd: float, budget: Budget | None) -> Allowance:
    if budget is None:
        return Allowance()
    if spent_usd >= budget.monthly_usd:
        return Allowance(models=False, premium=False, reason="monthly model budget used up")
    if spent_usd >= budget.near_usd:
        return Allowance(models=True, premium=False, reason="monthly budget nearly used up")
    return Allowance()


@dataclass(frozen=True)
class Crossing:
    near: bool = False
    exceeded: bool = False


def crossed(before_usd: float, after_usd: float, budget: Budget | None) -> Crossing:
    """Which thresholds this spend went over (each is crossed once per month)."""
    if budget is None:
        return Crossing()
    return Crossing(
        near=before_usd < budget.near_usd <= after_usd,
        exceeded=before_usd < budget.monthly_usd <= after_usd,
    )
