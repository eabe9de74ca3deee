"""Every message that crosses a service boundary: models, subjects, streams, versions. No I/O."""

from taskpilot.contracts.envelope import LeadId, Message, TenantId, utcnow

__all__ = ["LeadId", "Message", "TenantId", "utcnow"]
