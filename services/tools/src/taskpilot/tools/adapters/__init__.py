"""Provider I/O: the calendar, payments and workflow ports with their adapters, and the
outgoing-webhook sender.

Each adapter turns its client's failures into two named errors: :class:`ProviderUnavailable`
(transient: network, timeouts, 429, 5xx — retry later; for a calendar it means *unknown*, never
*free*) and :class:`ProviderRejected` (the provider said no: bad credentials, missing calendar,
invalid request — retrying cannot help). The service translates them at its edge.
"""

from taskpilot.tools.adapters.automation import (
    HttpWorkflowTrigger,
    WebhookSender,
    WorkflowRequest,
    WorkflowTrigger,
)
from taskpilot.tools.adapters.calendars import (
    CalDavCalendar,
    Calendar,
    CalendarEvent,
    GoogleCalendar,
    GoogleTokens,
)
from taskpilot.tools.adapters.errors import (
    ProviderError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from taskpilot.tools.adapters.payments import (
    CheckoutLink,
    CheckoutRequest,
    Payments,
    StripePayments,
    stripe_client,
)
from taskpilot.tools.adapters.providers import Providers
from taskpilot.tools.adapters.streams import ConversationHistory, DeadLetterArchive

__all__ = [
    "CalDavCalendar",
    "Calendar",
    "CalendarEvent",
    "CheckoutLink",
    "CheckoutRequest",
    "ConversationHistory",
    "DeadLetterArchive",
    "GoogleCalendar",
    "GoogleTokens",
    "HttpWorkflowTrigger",
    "Payments",
    "ProviderError",
    "ProviderRejectedError",
    "ProviderUnavailableError",
    "Providers",
    "StripePayments",
    "WebhookSender",
    "WorkflowRequest",
    "WorkflowTrigger",
    "stripe_client",
]
