"""All of analytics' SQL: projections (writes from events), queries (the dashboard's reads,
on the read pool), and the operator's store (actions, budgets, schema, rebuild)."""

from taskpilot.analytics.repository.operator import OperatorStore
from taskpilot.analytics.repository.projections import PROJECTION_LOCK, ProjectionStore
from taskpilot.analytics.repository.queries import ConversationFilter, ReadModels

__all__ = [
    "PROJECTION_LOCK",
    "ConversationFilter",
    "OperatorStore",
    "ProjectionStore",
    "ReadModels",
]
