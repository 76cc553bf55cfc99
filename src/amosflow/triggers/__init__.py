"""Triggers: schedules (Temporal Schedules), signed webhooks and deferred starts."""
