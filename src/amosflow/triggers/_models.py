"""Trigger definitions, versioned in the catalog like flows (`triggers/<name>.json`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
#: The largest body any hook accepts; read in full before a signature is checked.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Each hook's own limits by default: what one node serves, not below it (decision 0056).
DEFAULT_RATE_PER_S = 200.0
DEFAULT_BURST = 400
#: The longest a delivery with `respond: result` is held open (as `POST /runs?wait=`).
MAX_RESPOND_WAIT_S = 120.0
Overlap = Literal[
    "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"
]


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Trigger name, unique in the catalog.")
    flow: str = Field(pattern=NAME_PATTERN, description="Flow to run.")
    version: str | None = Field(default=None, description="Pinned flow version; latest if absent.")
    environment: str | None = Field(default=None, description="Config environment layer.")
    description: str | None = None


class ScheduleTrigger(_Trigger):
    """Run a flow on a cron schedule through a Temporal Schedule."""

    type: Literal["schedule"]
    cron: str = Field(
        description="Cron expression: 5 fields, 6 with a year, 7 with seconds first and a year;"
        " or `@every 30s`, `@hourly`, `@daily`."
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the cron expression.")
    overlap: Overlap = Field(default="skip", description="What to do when runs would overlap.")
    paused: bool = False
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron_shape(cls, value: str) -> str:
        if not value.startswith("@") and len(value.split()) not in {5, 6, 7}:
            raise ValueError("expected a cron expression of 5, 6 or 7 fields, or @every …")
        return value


class WebhookTrigger(_Trigger):
    """Run a flow when a signed HTTP request arrives at /api/v1/hooks/{name}."""

    type: Literal["webhook"]
    secret: str = Field(
        description="Name of the vault secret, in the hook's own folder, holding the HMAC key."
    )
    content_type: str = Field(default="application/json", description="Accepted content type.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=MAX_BODY_BYTES)
    replay_window_s: int = Field(
        default=300, ge=1, le=3600, description="Accepted clock skew, in seconds."
    )
    rate_per_s: float = Field(
        default=DEFAULT_RATE_PER_S, gt=0, description="Sustained requests per second."
    )
    burst: int = Field(
        default=DEFAULT_BURST, ge=1, description="Requests accepted at once above the rate."
    )
    respond: Literal["accepted", "result"] = Field(
        default="accepted",
        description="`accepted`: answer 202 once the run is started; `result`: answer with the"
        " ended run (200) if it ends within `wait_s`, else 202 with its id.",
    )
    wait_s: float = Field(
        default=30.0,
        gt=0,
        le=MAX_RESPOND_WAIT_S,
        description="With `respond: result`, how long a delivery waits for the run's end.",
    )


Trigger = Annotated[ScheduleTrigger | WebhookTrigger, Field(discriminator="type")]
TRIGGER_ADAPTER: TypeAdapter[ScheduleTrigger | WebhookTrigger] = TypeAdapter(Trigger)


def parse_trigger(document: Any) -> ScheduleTrigger | WebhookTrigger:
    """Validate a trigger document (pydantic errors are turned into pointers by the caller)."""
    return TRIGGER_ADAPTER.validate_python(document)
