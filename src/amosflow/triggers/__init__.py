"""Triggers: schedules (Temporal Schedules), signed webhooks and deferred starts."""

from amosflow.triggers import _schedules as schedules
from amosflow.triggers._models import MAX_BODY_BYTES, ScheduleTrigger, WebhookTrigger, parse_trigger
from amosflow.triggers._webhooks import sign, verify

__all__ = [
    "MAX_BODY_BYTES",
    "ScheduleTrigger",
    "WebhookTrigger",
    "parse_trigger",
    "schedules",
    "sign",
    "verify",
]
