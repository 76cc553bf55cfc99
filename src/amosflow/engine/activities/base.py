"""The wrapper every action runs in: secrets, typed `with`, heartbeats, checks and spilling.

Each action module registers one coroutine per action name with ``@implementation``; the
worker turns each into a Temporal activity named after the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from amosflow import secrets
from amosflow.dsl import expr
from amosflow.dsl.actions import validate_with
from amosflow.engine.types import ActionCall, ActionResult
from amosflow.errors import ActionError, AmosError, ExpressionError

if TYPE_CHECKING:
    from amosflow.artifacts import ArtifactStore

Impl = Callable[["ActionContext", Any], Awaitable[Any]]
_IMPLEMENTATIONS: dict[str, Impl] = {}
BUILTIN_MODULES = ("amosflow.engine.activities.core", "amosflow.engine.activities.http")
HEARTBEAT_EVERY_S = 5.0
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


def _parts(slot: dict[str, Any]) -> tuple[str | expr.SecretRef, ...]:
    return tuple(
        expr.SecretRef(p["secret"]) if isinstance(p, dict) else str(p) for p in slot["parts"]
    )


async def _heartbeat_forever() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_S)


@dataclass
class _Runner:
    """Runs one action attempt inside the activity and shapes its result or failure."""

    artifacts: ArtifactStore
    inline_limit: int
    resolve_secret: Callable[[str], str]

    async def __call__(self, call: ActionCall) -> ActionResult:
        ctx = ActionContext(call=call, artifacts=self.artifacts)
        try:
            output = await self._attempt(ctx)
        except ApplicationError:
            raise
        except ActionError as err:
            raise ApplicationError(
                ctx.redact(str(err)),
                {"type": err.type},
                type=err.type,
                non_retryable=not err.retryable,
            ) from None
        except AmosError as err:
            raise ApplicationError(
                ctx.redact(str(err)),
                {"type": type(err).__name__},
                type=type(err).__name__,
                non_retryable=True,
            ) from None
        output = ctx.redact_value(output)  # an upstream may echo a secret back: keep it out
        return ActionResult(output=self._spill(output), attempt=activity.info().attempt)

    async def _attempt(self, ctx: ActionContext) -> Any:
        call = ctx.call
        impl = _IMPLEMENTATIONS.get(call.action)
        if impl is None:
            raise ActionError(
                f"no implementation of {call.action!r} on this worker", retryable=False
            )

        def resolve(name: str) -> str:
            value = self.resolve_secret(name)
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
        if activity.info().is_local:
            output = await impl(ctx, params)
        else:
            beat = asyncio.create_task(_heartbeat_forever())
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


def build_activities(
    artifacts: ArtifactStore,
    *,
    inline_limit: int = 64 * 1024,
    resolve_secret: Callable[[str], str] = secrets.resolve,
) -> list[Callable[..., Any]]:
    """Make one Temporal activity per implemented action, named after the action."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    runner = _Runner(artifacts, inline_limit, resolve_secret)
    made: list[Callable[..., Any]] = []
    for name in sorted(_IMPLEMENTATIONS):

        async def run(call: ActionCall) -> ActionResult:
            return await runner(call)

        run.__name__ = run.__qualname__ = name.replace(".", "_")
        made.append(activity.defn(name=name)(run))
    return made
