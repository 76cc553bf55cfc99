"""The one workflow that runs every flow: a deterministic interpreter of amos.flow/v1.

Control flow is evaluated here, with no activity; each `action` step is one activity and
each `call` one child run. Loops that would push the history past its limits hand their
remaining iterations to a child run of this same workflow (a loop segment).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)

from amosflow.dsl import (
    ActionStep,
    CallStep,
    FailStep,
    ForeachStep,
    HumanStep,
    IfStep,
    ParallelStep,
    RetryPolicy,
    SetStep,
    Step,
    SucceedStep,
    SwitchStep,
    TryStep,
    WaitStep,
    WhileStep,
    content_hash,
    expr,
    parse_duration,
)
from amosflow.dsl import actions as action_registry
from amosflow.engine.types import (
    DECIDE_UPDATE,
    PROGRESS_QUERY,
    TIMELINE_KEY,
    WORKFLOW_NAME,
    ActionCall,
    ActionResult,
    DispatchCall,
    LoopSegment,
    RunInput,
    SegmentResult,
    TaskDecision,
    TaskOpen,
)
from amosflow.engine.workflow._human import HumanTasks, HumanWait, task_id_for
from amosflow.engine.workflow._state import (
    COMPLETED,
    FAILED,
    SKIPPED,
    Frame,
    Progress,
    StepFailedError,
    SucceedSignal,
    initial_records,
)
from amosflow.engine.workflow._support import (
    duration_or_fail,
    fail,
    failure_from,
    json_equal,
    load_flow,
    slot_parts,
    to_temporal_retry,
)
from amosflow.errors import ExpressionError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

# Keep every history far below Temporal's 51,200-event limit; a loop hands its remaining
# iterations to a child run once its own history has grown this long.
HISTORY_EVENT_BUDGET = 10_000
DEFAULT_TIMEOUT = timedelta(minutes=5)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
#: The control plane's activity that leases a step to a runner, on ``<queue>.control``.
DISPATCH_ACTIVITY = "amos.runner.dispatch"
CONTROL_SUFFIX = ".control"
DEFAULT_RETRY = RetryPolicy()


@workflow.defn(name=WORKFLOW_NAME)
class FlowWorkflow:
    """Interprets one pinned flow document to its end."""

    def __init__(self) -> None:
        self._progress = Progress()
        self._vars: dict[str, Any] = {}
        self._humans = HumanTasks()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> dict[str, Any]:
        """Each step's status, attempt and timing so far."""
        return self._progress.snapshot()

    @workflow.update(name=DECIDE_UPDATE)
    async def decide(self, decision: TaskDecision) -> dict[str, Any]:
        """Decide one of the human tasks this run waits on; returns the step's output."""
        return await self._humans.accept(decision)

    @decide.validator
    def _validate_decision(self, decision: TaskDecision) -> None:
        """Refuse, before it enters the history, a decision this run would not accept."""
        problem = self._humans.refusal(decision)
        if problem is not None:
            raise problem

    @workflow.run
    async def run(self, inp: RunInput) -> dict[str, Any]:
        """Run the flow (or one loop segment of it) and return the DSL result object."""
        self._inp = inp
        self._flow, self._pointers, self._by_pointer = load_flow(inp.flow, inp.flow_hash)
        self._run_id = inp.run_id or workflow.info().workflow_id
        self._run_info = {
            "id": self._run_id,
            "flow": self._flow.name,
            "flow_hash": inp.flow_hash,
            "started_at": workflow.info().start_time.isoformat(),
        }
        if inp.segment is not None:
            return await self._run_segment(inp.segment)
        frame = Frame(steps=initial_records(list(self._pointers)))
        try:
            await self._run_steps(self._flow.steps, frame)
        except SucceedSignal:
            pass
        except StepFailedError as err:
            # The timeline rides along as a second detail, so whoever records the run's end
            # has every step without asking the workflow again (decision 0056).
            raise ApplicationError(
                err.message,
                err.as_dict(),
                {TIMELINE_KEY: self._progress.snapshot()},
                type=err.type,
                non_retryable=True,
            ) from None
        output = self._render(self._flow.outputs, frame, "/outputs")
        return {
            "run_id": self._run_id,
            "status": COMPLETED,
            "output": output,
            "error": None,
            TIMELINE_KEY: self._progress.snapshot(),
        }

    # -- evaluation helpers -------------------------------------------------------------

    def _scope(self, frame: Frame) -> dict[str, Any]:
        return {
            "inputs": self._inp.inputs,
            "vars": self._vars,
            "steps": frame.steps,
            "config": self._inp.config,
            "run": self._run_info,
            **frame.locals,
        }

    def _render(self, value: Any, frame: Frame, pointer: str) -> Any:
        try:
            return expr.render(value, self._scope(frame), pointer)
        except ExpressionError as err:
            raise StepFailedError(str(err), "ExpressionError", self._step_of(pointer)) from None

    def _condition(self, value: str | bool, frame: Frame, pointer: str) -> bool:  # noqa: FBT001
        try:
            return expr.evaluate_condition(value, self._scope(frame), pointer)
        except ExpressionError as err:
            raise StepFailedError(str(err), "ExpressionError", self._step_of(pointer)) from None

    def _step_of(self, pointer: str) -> str:
        best = ""
        for candidate in self._by_pointer:
            if pointer.startswith(candidate) and len(candidate) > len(best):
                best = candidate
        return self._by_pointer[best].id if best else ""

    def _now(self) -> str:
        return workflow.now().isoformat()

    def _history_is_heavy(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= HISTORY_EVENT_BUDGET
            or info.is_continue_as_new_suggested()
        )

    # -- steps --------------------------------------------------------------------------

    async def _run_steps(self, steps: list[Step], frame: Frame) -> Any:
        last: Any = None
        for step in steps:
            last = await self._run_step(step, frame)
        return last

    async def _run_step(self, step: Step, frame: Frame) -> Any:
        pointer = self._pointers[step.id]
        if step.when is not None and not self._condition(step.when, frame, f"{pointer}/when"):
            frame.steps[step.id] = {"status": SKIPPED, "output": None}
            self._progress.end(step.id, SKIPPED, self._now())
            return None
        self._progress.start(step.id, self._now())
        frame.steps[step.id] = {"status": "running", "output": None}
        attempt: int | None = None
        try:
            output, attempt = await self._dispatch(step, frame, pointer)
        except StepFailedError as err:
            self._progress.end(step.id, FAILED, self._now(), error=err.as_dict())
            if step.on_error == "continue":
                output = {"error": err.as_dict()}
                frame.steps[step.id] = {"status": FAILED, "output": output}
                return output
            frame.steps[step.id] = {"status": FAILED, "output": None}
            raise
        except SucceedSignal:
            self._progress.end(step.id, COMPLETED, self._now())
            frame.steps[step.id] = {"status": COMPLETED, "output": None}
            raise
        frame.steps[step.id] = {"status": COMPLETED, "output": output}
        self._progress.end(step.id, COMPLETED, self._now(), attempt=attempt)
        return output

    async def _dispatch(self, step: Step, frame: Frame, pointer: str) -> tuple[Any, int | None]:
        if isinstance(step, ActionStep):
            result = await self._action(step, frame, pointer)
            return result.output, result.attempt
        handler = _HANDLERS.get(type(step))
        if handler is None:
            raise StepFailedError(
                f"{step.type} steps are not yet supported by this engine", "NotSupported", step.id
            )
        return await handler(self, step, frame, pointer), None

    async def _set(self, step: SetStep, frame: Frame, pointer: str) -> dict[str, Any]:
        output: dict[str, Any] = {}
        for name, value in step.values.items():
            output[name] = self._vars[name] = self._render(value, frame, f"{pointer}/values/{name}")
        return output

    async def _if(self, step: IfStep, frame: Frame, pointer: str) -> Any:
        branch = step.then if self._condition(step.condition, frame, pointer) else step.else_
        return await self._run_steps(branch, frame)

    async def _fail_step(self, step: FailStep, frame: Frame, pointer: str) -> NoReturn:
        message = self._render(step.message, frame, f"{pointer}/message")
        raise StepFailedError(str(message), "Fail", step.id)

    async def _succeed(self, _step: SucceedStep, _frame: Frame, _pointer: str) -> NoReturn:
        raise SucceedSignal

    async def _action(self, step: ActionStep, frame: Frame, pointer: str) -> ActionResult:
        spec = action_registry.get_action(step.action)
        try:
            rendered, slots = expr.render_with_secrets(step.with_, self._scope(frame), "")
        except ExpressionError as err:
            raise StepFailedError(
                f"{pointer}/with{err.pointer}: {err.reason}", "ExpressionError", step.id
            ) from None
        key = frame.iteration_key
        call = ActionCall(
            action=step.action,
            with_=rendered,
            run_id=self._run_id,
            step_id=step.id,
            iteration=key,
            idempotency_key=f"{self._run_id}/{step.id}/{key}",
            secret_slots=[{"pointer": s.pointer, "parts": slot_parts(s)} for s in slots],
            check=step.check,
            check_scope=self._check_scope(step, frame),
            pointer=pointer,
        )
        defaults = self._flow.defaults
        timeout_text = step.timeout or defaults.timeout
        timeout = parse_duration(timeout_text) if timeout_text else DEFAULT_TIMEOUT
        retry = to_temporal_retry(step.retry or defaults.retry or DEFAULT_RETRY)
        try:
            if step.runner is not None:
                # Leased to a runner by the control plane; completes asynchronously.
                result: ActionResult = await workflow.execute_activity(
                    DISPATCH_ACTIVITY,
                    DispatchCall(call=call, capability=spec.capability, zone=step.runner.zone),
                    result_type=ActionResult,
                    task_queue=f"{workflow.info().task_queue}{CONTROL_SUFFIX}",
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                )
            elif spec.local:
                result = await workflow.execute_local_activity(
                    spec.name,
                    call,
                    result_type=ActionResult,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                )
            else:
                result = await workflow.execute_activity(
                    spec.name,
                    call,
                    result_type=ActionResult,
                    start_to_close_timeout=timeout,
                    heartbeat_timeout=min(timeout, HEARTBEAT_TIMEOUT),
                    retry_policy=retry,
                )
        except (ActivityError, FailureError) as err:
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError from err
            raise failure_from(err, step.id) from None
        return result

    def _check_scope(self, step: ActionStep, frame: Frame) -> dict[str, Any]:
        """The names a `check` reads besides `output`, bound now since the activity runs it."""
        if step.check is None:
            return {}
        scope = self._scope(frame)
        names = expr.compile_template(step.check).names - {"output"}
        return {name: scope[name] for name in sorted(names) if name in scope}

    async def _switch(self, step: SwitchStep, frame: Frame, pointer: str) -> Any:
        value = self._render(step.value, frame, f"{pointer}/value")
        for index, case in enumerate(step.cases):
            if json_equal(value, self._render(case.equals, frame, f"{pointer}/cases/{index}")):
                return await self._run_steps(case.steps, frame)
        return await self._run_steps(step.default, frame)

    async def _iteration(
        self, steps: list[Step], frame: Frame, index: int, local_values: dict[str, Any]
    ) -> Any:
        child = frame.child(index, local_values)
        try:
            return await self._run_steps(steps, child)
        finally:
            frame.adopt(child, [s.id for s in steps])

    async def _foreach(
        self, step: ForeachStep, frame: Frame, pointer: str, start: int = 0, items: Any = None
    ) -> list[Any]:
        if items is None:
            items = self._render(step.items, frame, f"{pointer}/items")
        if not isinstance(items, list):
            raise StepFailedError(
                f"{pointer}/items: foreach needs a list, got {type(items).__name__}",
                "ExpressionError",
                step.id,
            )
        outputs: list[Any] = []
        index = start
        while index < start + len(items):
            if self._history_is_heavy():
                rest = items[index - start :]
                seg = await self._offload(pointer, frame, index, rest)
                return outputs + seg.outputs
            window = range(index, min(index + step.concurrency, start + len(items)))
            results = await asyncio.gather(
                *(
                    self._iteration(step.steps, frame, i, {step.as_: items[i - start], "index": i})
                    for i in window
                )
            )
            outputs.extend(results)
            index = window.stop
        return outputs

    async def _while(self, step: WhileStep, frame: Frame, pointer: str, start: int = 0) -> Any:
        last: Any = None
        index = start
        while self._condition(step.condition, frame, f"{pointer}/condition"):
            if index >= step.max_iterations:
                raise StepFailedError(
                    f"while loop reached max_iterations ({step.max_iterations})",
                    "LoopLimit",
                    step.id,
                )
            if self._history_is_heavy():
                return (await self._offload(pointer, frame, index, None)).last
            last = await self._iteration(step.steps, frame, index, {"index": index})
            index += 1
        return last

    async def _offload(
        self, pointer: str, frame: Frame, start: int, items: list[Any] | None
    ) -> SegmentResult:
        """Run the rest of a loop in a child run with a fresh history, then carry on."""
        segment = LoopSegment(
            pointer=pointer,
            start=start,
            items=items,
            vars=self._vars,
            steps=frame.steps,
            locals=frame.locals,
            iteration=list(frame.iteration),
        )
        child_id = f"{self._run_id}/{pointer.strip('/')}/{frame.iteration_key}/{start}"
        child_input = RunInput(
            flow=self._inp.flow,
            flow_hash=self._inp.flow_hash,
            inputs=self._inp.inputs,
            config=self._inp.config,
            config_hash=self._inp.config_hash,
            library=self._inp.library,
            run_id=self._run_id,
            segment=segment,
        )
        try:
            raw: SegmentResult = await workflow.execute_child_workflow(
                WORKFLOW_NAME, child_input, id=child_id, result_type=SegmentResult
            )
        except ChildWorkflowError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.details:
                details = cause.details[0]
                raise StepFailedError(
                    cause.message, str(details.get("type")), str(details.get("step"))
                ) from None
            raise failure_from(err, self._by_pointer[pointer].id) from None
        self._vars = raw.vars
        frame.steps.update(raw.steps)
        return raw

    async def _run_segment(self, seg: LoopSegment) -> dict[str, Any]:
        """Body of a loop-segment child run: continue the loop where the parent stopped."""
        self._vars = dict(seg.vars)
        frame = Frame(
            steps=dict(seg.steps), locals=dict(seg.locals), iteration=tuple(seg.iteration)
        )
        step = self._by_pointer[seg.pointer]
        outputs: list[Any] = []
        last: Any = None
        try:
            if isinstance(step, ForeachStep):
                outputs = await self._foreach(step, frame, seg.pointer, seg.start, seg.items)
            elif isinstance(step, WhileStep):
                last = await self._while(step, frame, seg.pointer, seg.start)
        except StepFailedError as err:
            raise ApplicationError(
                err.message, err.as_dict(), type=err.type, non_retryable=True
            ) from None
        result = SegmentResult(outputs=outputs, vars=self._vars, steps=frame.steps, last=last)
        return result.__dict__

    async def _parallel(self, step: ParallelStep, frame: Frame, _pointer: str) -> list[Any]:
        tasks = [asyncio.ensure_future(self._run_steps(branch, frame)) for branch in step.branches]
        if not step.fail_fast:
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return list(results)
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _try(self, step: TryStep, frame: Frame, _pointer: str) -> Any:
        try:
            return await self._run_steps(step.steps, frame)
        except StepFailedError as err:
            if not step.catch:
                raise
            saved = frame.locals
            frame.locals = {**saved, "error": err.as_dict()}
            try:
                return await self._run_steps(step.catch, frame)
            finally:
                frame.locals = saved
        finally:
            if step.finally_:
                await self._run_steps(step.finally_, frame)

    async def _wait(self, step: WaitStep, frame: Frame, pointer: str) -> None:
        if step.duration is not None:
            text = self._render(step.duration, frame, f"{pointer}/duration")
            delay = duration_or_fail(str(text), step.id)
        else:
            until = self._render(step.until, frame, f"{pointer}/until")
            try:
                moment = datetime.fromisoformat(str(until))
            except ValueError:
                fail(f"{pointer}/until: not an RFC 3339 time: {until!r}", step.id)
            delay = moment - workflow.now()
        if delay > timedelta(0):
            await workflow.sleep(delay)

    async def _human(self, step: HumanStep, frame: Frame, pointer: str) -> dict[str, Any]:
        title = self._render(step.title, frame, f"{pointer}/title")
        assignees = self._render(step.assignees, frame, f"{pointer}/assignees")
        escalate_to = self._render(step.escalate_to, frame, f"{pointer}/escalate_to")
        sla = duration_or_fail(step.sla, step.id) if step.sla else None
        key = frame.iteration_key
        task_id = task_id_for(self._run_id, step.id, key)
        task = TaskOpen(
            task_id=task_id,
            run_id=self._run_id,
            step_id=step.id,
            iteration=key,
            kind=step.task,
            title=str(title),
            assignees=[str(a) for a in assignees],
            form=step.form,
            due_at=(workflow.now() + sla).isoformat() if sla is not None else None,
            flow=self._flow.name,
            workflow_id=workflow.info().workflow_id,
        )
        spec = HumanWait(
            task=task,
            sla=sla,
            escalate_to=[str(a) for a in escalate_to],
            on_timeout=step.on_timeout,
            control_queue=f"{workflow.info().task_queue}{CONTROL_SUFFIX}",
        )
        self._progress.wait(step.id, task_id)
        try:
            return await self._humans.wait(spec, step.id)
        finally:
            self._progress.resume(step.id)

    async def _call(self, step: CallStep, frame: Frame, pointer: str) -> Any:
        doc = self._inp.library.get(step.flow)
        if doc is None:
            fail(f"{pointer}/flow: flow {step.flow!r} is not available to this run", step.id)
        inputs = self._render(step.inputs, frame, f"{pointer}/inputs")
        child_id = f"{self._run_id}/{step.id}/{frame.iteration_key}"
        child_input = RunInput(
            flow=doc,
            flow_hash=content_hash(doc),
            inputs=inputs,
            config=self._inp.config,
            config_hash=self._inp.config_hash,
            library=self._inp.library,
            run_id=child_id,
        )
        try:
            result = await workflow.execute_child_workflow(
                WORKFLOW_NAME, child_input, id=child_id, result_type=dict
            )
        except ChildWorkflowError as err:
            raise failure_from(err, step.id) from None
        return result.get("output")


# How each control-flow step type is interpreted.
_HANDLERS: dict[type[Any], Callable[[FlowWorkflow, Any, Frame, str], Awaitable[Any]]] = {
    SetStep: FlowWorkflow._set,  # noqa: SLF001
    IfStep: FlowWorkflow._if,  # noqa: SLF001
    SwitchStep: FlowWorkflow._switch,  # noqa: SLF001
    ForeachStep: FlowWorkflow._foreach,  # noqa: SLF001
    WhileStep: FlowWorkflow._while,  # noqa: SLF001
    ParallelStep: FlowWorkflow._parallel,  # noqa: SLF001
    TryStep: FlowWorkflow._try,  # noqa: SLF001
    WaitStep: FlowWorkflow._wait,  # noqa: SLF001
    CallStep: FlowWorkflow._call,  # noqa: SLF001
    HumanStep: FlowWorkflow._human,  # noqa: SLF001
    FailStep: FlowWorkflow._fail_step,  # noqa: SLF001
    SucceedStep: FlowWorkflow._succeed,  # noqa: SLF001
}
