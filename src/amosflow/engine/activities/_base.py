"""The wrapper every action runs in: secrets, typed `with`, heartbeats, checks and spilling.

Each action module registers one coroutine per action name with ``@implementation``; the
worker turns each into a Temporal activity named after the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from amosflow.config import env_secret
from amosflow.dsl import expr
from amosflow.dsl.actions import validate_with
from amosflow.engine.types import ActionCall, ActionResult
from amosflow.errors import ActionError, AmosError, ExpressionError
from amosflow.telemetry import redaction

if TYPE_CHECKING:
    from amosflow.engine.activities import ArtifactStore

Impl = Callable[["ActionContext", Any], Awaitable[Any]]
_IMPLEMENTATIONS: dict[str, Impl] = {}
BUILTIN_MODULES = (
    "amosflow.engine.activities.core",
    "amosflow.engine.activities.http",
    "amosflow.engine.activities.browser",
    "amosflow.engine.activities.code",
    "amosflow.engine.activities.file",
    "amosflow.engine.activities.sql",
    "amosflow.engine.activities.email",
    "amosflow.ai._generate",
    "amosflow.ai._agent",
)
HEARTBEAT_EVERY_S = 5.0
RUN_CONFIGS_KEPT = 256
_RUN_CONFIGS: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
REDACTED = "***"


def implementation(name: str) -> Callable[[Impl], Impl]:
    """Register the coroutine that performs action ``name``."""

    def register(func: Impl) -> Impl:
        _IMPLEMENTATIONS[name] = func
        return func

    return register


@dataclass
class ActionContext:
    """What an action may use: its identity, the artifact store and the secrets in use."""

    call: ActionCall
    artifacts: ArtifactStore
    secrets_in_use: list[str] = field(default_factory=list)
    config: Mapping[str, Any] | None = None
    """The run's Effective Config; read from the run's start on first use when None."""
    beat: Callable[..., None] | None = None

    def heartbeat(self, *details: Any) -> None:
        """Say the action is alive (a Temporal heartbeat, or a lease renewal on a runner)."""
        if self.beat is not None:
            self.beat(*details)

    async def run_config(self) -> Mapping[str, Any]:
        """The config snapshot of the run this action belongs to (its ``RunInput.config``)."""
        if self.config is None:
            self.config = await current_run_config()
        return self.config

    @property
    def idempotency_key(self) -> str:
        """Stable across retries: ``run_id/step_id/iteration``."""
        return self.call.idempotency_key

    def redact(self, text: str) -> str:
        """Mask every secret value this attempt resolved."""
        for value in self.secrets_in_use:
            if value:
                text = text.replace(value, REDACTED)
        return text

    def redact_value(self, value: Any) -> Any:
        """Mask every secret value this attempt resolved in the strings of a JSON value."""
        if not self.secrets_in_use:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        return value


async def current_run_config() -> dict[str, Any]:
    """Read the config from the input of the workflow that runs this activity, once per run."""
    try:
        info = activity.info()
        client = activity.client()
    except RuntimeError:
        raise ActionError(
            "the run's config is unknown outside an activity", type_="RunConfigUnavailable"
        ) from None
    key = (info.workflow_id or "", info.workflow_run_id or "")
    if key in _RUN_CONFIGS:
        _RUN_CONFIGS.move_to_end(key)
        return _RUN_CONFIGS[key]
    handle = client.get_workflow_handle(key[0], run_id=key[1] or None)
    try:
        async for event in handle.fetch_history_events(page_size=1):
            started = event.workflow_execution_started_event_attributes
            values = await client.data_converter.decode(started.input.payloads)
            break
        else:
            values = []
    except RPCError as err:
        raise ActionError(
            f"cannot read the run's config: {err.message}", type_="RunConfigUnavailable"
        ) from None
    run_input = values[0] if values and isinstance(values[0], dict) else {}
    config = run_input.get("config")
    config = config if isinstance(config, dict) else {}
    _RUN_CONFIGS[key] = config
    while len(_RUN_CONFIGS) > RUN_CONFIGS_KEPT:
        _RUN_CONFIGS.popitem(last=False)
    return config


def _parts(slot: dict[str, Any]) -> tuple[str | expr.SecretRef, ...]:
    return tuple(
        expr.SecretRef(p["secret"]) if isinstance(p, dict) else str(p) for p in slot["parts"]
    )


async def _heartbeat_forever(heartbeat: Callable[[], None]) -> None:
    while True:
        heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_S)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed, already redacted: what a runner reports and an activity raises."""

    message: str
    type: str
    retryable: bool

    def to_application_error(self) -> ApplicationError:
        """The Temporal failure of this attempt."""
        return ApplicationError(
            self.message, {"type": self.type}, type=self.type, non_retryable=not self.retryable
        )


@dataclass
class Performer:
    """Runs one action attempt and shapes its result or failure.

    The same code runs inside a Temporal activity on a worker and, outside Temporal, on a
    runner that leased the job: only how it heartbeats and where the run's config comes from
    differ.
    """

    artifacts: ArtifactStore
    inline_limit: int
    resolve_secret: Callable[[str, str, str], str]

    async def perform(
        self,
        call: ActionCall,
        *,
        heartbeat: Callable[[], None] | None,
        config: Mapping[str, Any] | None = None,
    ) -> Any | Failure:
        """The attempt's output (redacted, spilled when large) or its Failure."""
        ctx = ActionContext(call=call, artifacts=self.artifacts, config=config, beat=heartbeat)
        try:
            output = await self._attempt(ctx, heartbeat)
        except ActionError as err:
            return Failure(ctx.redact(str(err)), err.type, err.retryable)
        except AmosError as err:
            return Failure(ctx.redact(str(err)), type(err).__name__, retryable=False)
        output = ctx.redact_value(output)  # an upstream may echo a secret back: keep it out
        return self._spill(output)

    async def _attempt(self, ctx: ActionContext, heartbeat: Callable[[], None] | None) -> Any:
        call = ctx.call
        impl = _IMPLEMENTATIONS.get(call.action)
        if impl is None:
            raise ActionError(
                f"no implementation of {call.action!r} on this worker", retryable=False
            )

        def resolve(name: str) -> str:
            value = self.resolve_secret(name, call.run_id, call.step_id)
            redaction.hold(value)  # masked in every log line of the process while the step runs
            ctx.secrets_in_use.append(value)
            return value

        raw = expr.apply_secret_slots(
            call.with_,
            [expr.SecretSlot(s["pointer"], _parts(s)) for s in call.secret_slots],
            resolve,
        )
        try:
            params = validate_with(call.action, raw)
        except ValidationError as err:
            problems = "; ".join(
                f"{call.pointer}/with/{'/'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in err.errors(include_input=False, include_url=False)
            )
            raise ActionError(
                ctx.redact(problems), type_="ValidationError", retryable=False
            ) from None
        if heartbeat is None:
            output = await impl(ctx, params)
        else:
            beat = asyncio.create_task(_heartbeat_forever(heartbeat))
            try:
                output = await impl(ctx, params)
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        if call.check is not None:
            self._check(ctx, output)
        return output

    def _check(self, ctx: ActionContext, output: Any) -> None:
        try:
            scope = {**ctx.call.check_scope, "output": output}
            ok = expr.evaluate_condition(ctx.call.check or "", scope, f"{ctx.call.pointer}/check")
        except ExpressionError as err:
            raise ActionError(
                ctx.redact(str(err)), type_="ExpressionError", retryable=False
            ) from None
        if not ok:
            raise ActionError(
                f"post-condition failed: {ctx.call.check}", type_="PostConditionFailed"
            )

    def _spill(self, output: Any) -> Any:
        data = json.dumps(output, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) <= self.inline_limit:
            return output
        return self.artifacts.put(data)


@dataclass
class _Runner(Performer):
    """A Performer inside a Temporal activity."""

    async def __call__(self, call: ActionCall) -> ActionResult:
        info = activity.info()
        outcome = await self.perform(call, heartbeat=None if info.is_local else activity.heartbeat)
        if isinstance(outcome, Failure):
            raise outcome.to_application_error()
        return ActionResult(output=outcome, attempt=info.attempt)


def load_implementations() -> None:
    """Import every action module, so each registers its implementation."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def build_activities(
    artifacts: ArtifactStore,
    *,
    inline_limit: int = 64 * 1024,
    resolve_secret: Callable[[str, str, str], str] = env_secret,
) -> list[Callable[..., Any]]:
    """Make one Temporal activity per implemented action, named after the action."""
    load_implementations()
    runner = _Runner(artifacts, inline_limit, resolve_secret)
    made: list[Callable[..., Any]] = []
    for name in sorted(_IMPLEMENTATIONS):

        async def run(call: ActionCall) -> ActionResult:
            return await runner(call)

        run.__name__ = run.__qualname__ = name.replace(".", "_")
        made.append(activity.defn(name=name)(run))
    return made
