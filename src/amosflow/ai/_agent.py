"""`agent.run`: a Pydantic AI agent inside one activity, bounded and held to its receipts.

The harness gives the agent a model client from the model gateway (every request audited,
counted and budgeted) and, as its only tools, the step's allowlisted MCP tools through the
MCP gateway. It bounds the run by iterations (model requests), tokens and wall clock, and
applies the step's autonomy before any tool with side effects. When the agent is done, the
harness walks every tool result in the conversation and accepts it only with a valid receipt
from this step's gateway: a tool result the agent did not get from the gateway fails the step.

Pydantic AI and the MCP SDK are imported when a step runs, not when the worker starts: an
install that never runs an agent never loads them.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from amosflow.ai import _runtime as runtime
from amosflow.ai._models import resolve_model
from amosflow.ai._receipts import Receipt, ReceiptSigner, receipt_key_path
from amosflow.config import EngineSettings
from amosflow.dsl import canonical_json, parse_duration
from amosflow.engine.activities import ActionContext, implementation
from amosflow.errors import ActionError, AmosError, ReceiptError, ToolBlockedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx
    from pydantic_ai.messages import ModelMessage

    from amosflow.ai._models import ModelDefinition
    from amosflow.ai.mcp import GatewayTool, McpGateway
    from amosflow.dsl.actions import AgentRunWith

__all__ = [
    "AgentLimits",
    "ToolNames",
    "gateway_signer",
    "install_signer",
    "run_agent",
    "verify_tool_results",
]

Autonomy = Literal["read_only", "supervised", "autonomous"]
Stopped = Literal["max_iterations", "max_tokens", "timeout"]
#: The most tokens one model answer may take; the step's budget bounds the sum of them all.
MAX_RESPONSE_TOKENS = 1024
OUTPUT_TOOL_PREFIX = "final_result"


@dataclass(frozen=True, slots=True)
class AgentLimits:
    """The bounds of one agent run."""

    max_iterations: int
    max_tokens: int
    timeout_s: float
    autonomy: Autonomy = "supervised"
    tool_choice: Literal["auto", "required"] = "auto"


class ToolNames:
    """Model-facing function names ↔ qualified tool names.

    OpenAI-compatible servers accept only ``[A-Za-z0-9_-]`` in a function name, so
    ``crm.lookup`` is offered as ``crm__lookup``; receipts and audit keep the qualified name.
    """

    def __init__(self, qualified: Sequence[str]) -> None:
        self._by_function: dict[str, str] = {}
        for name in qualified:
            server, _, tool = name.partition(".")
            function = f"{_safe(server)}__{_safe(tool)}"[:64]
            if function in self._by_function:
                raise ActionError(
                    f"tools {self._by_function[function]!r} and {name!r} would reach the model"
                    " under one name; rename one of them",
                    type_="ToolNameClash",
                    retryable=False,
                )
            self._by_function[function] = name

    def qualified(self, function: str) -> str | None:
        """The qualified tool behind a function name, or None when there is none."""
        return self._by_function.get(function)

    def function(self, qualified: str) -> str:
        """The function name a qualified tool is offered under."""
        return next(f for f, q in self._by_function.items() if q == qualified)


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in part)


def verify_tool_results(
    messages: Sequence[ModelMessage],
    *,
    names: ToolNames,
    signer: ReceiptSigner,
    scope: str,
    issued: set[str],
) -> list[dict[str, Any]]:
    """Check every tool result in the conversation against its receipt; return the verified ones.

    A result must carry a receipt that this install's gateway signed for ``scope`` (this
    step attempt), for the tool it is reported under, whose result hash matches the result,
    and that the gateway issued in this very run (``issued``, call ids) — at most once.
    Raises ReceiptError at the first result that fails, so the step fails.
    """
    from pydantic_ai.messages import ModelRequest, ToolReturnPart  # noqa: PLC0415 - see module

    verified: list[dict[str, Any]] = []
    used: set[str] = set()
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if not isinstance(part, ToolReturnPart):
                continue
            qualified = names.qualified(part.tool_name)
            if qualified is None:
                if part.tool_name.startswith(OUTPUT_TOOL_PREFIX):
                    continue  # the agent's own final answer, not a tool result
                raise ReceiptError(f"a result of tool {part.tool_name!r} has no gateway receipt")
            content: Any = part.content
            if not isinstance(content, dict) or "result" not in content:
                raise ReceiptError(f"a result of tool {qualified} has no gateway receipt")
            receipt = Receipt.from_json(content.get("receipt"))
            signer.verify(receipt, scope=scope, tool=qualified, result=content["result"])
            if receipt.call_id not in issued or receipt.call_id in used:
                raise ReceiptError(f"receipt {receipt.call_id} was not issued for this call")
            used.add(receipt.call_id)
            verified.append(
                {
                    "tool": qualified,
                    "result": content["result"],
                    "receipt": receipt.to_json(),
                }
            )
    return verified


def _amos_cause(err: BaseException) -> AmosError | None:
    """The AmosError behind an SDK's wrapping (exception groups, causes, contexts)."""
    seen: set[int] = set()
    pending: list[BaseException] = [err]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, AmosError):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def _usage(messages: Sequence[ModelMessage]) -> tuple[int, dict[str, int]]:
    from pydantic_ai.messages import ModelResponse  # noqa: PLC0415 - see module

    responses = [m for m in messages if isinstance(m, ModelResponse)]
    prompt = sum(r.usage.input_tokens for r in responses)
    completion = sum(r.usage.output_tokens for r in responses)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return len(responses), usage


def _agent_tools(
    tools: Sequence[GatewayTool], gateway: McpGateway, names: ToolNames, autonomy: Autonomy
) -> list[Any]:
    from pydantic_ai import Tool  # noqa: PLC0415 - see module

    made = []
    for tool in tools:

        async def call(_tool: GatewayTool = tool, **arguments: Any) -> dict[str, Any]:
            if not _tool.read_only and autonomy != "autonomous":
                raise gateway.refuse(
                    _tool.qualified,
                    "checkpoint",
                    f"it has side effects and autonomy {autonomy!r} needs a human checkpoint"
                    " before it; agent steps cannot hold one yet, so the step stops here (set"
                    " autonomy 'autonomous' to let the agent call it, or remove it from tools)",
                )
            outcome = await gateway.call(_tool.qualified, arguments)
            return {"result": outcome.result, "receipt": outcome.receipt.to_json()}

        made.append(
            Tool.from_schema(
                call,
                name=names.function(tool.qualified),
                description=tool.description or tool.qualified,
                json_schema=tool.input_schema,
            )
        )
    return made


def _prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    return canonical_json(value).decode() if value is not None else "Begin."


async def run_agent(
    *,
    model: ModelDefinition,
    http_client: httpx.AsyncClient,
    gateway: McpGateway,
    signer: ReceiptSigner,
    instructions: str,
    user_input: Any,
    limits: AgentLimits,
    output_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one bounded agent and return the step's output; raises on a guard or a bad receipt."""
    from openai import AsyncOpenAI  # noqa: PLC0415 - see module
    from pydantic_ai import Agent, StructuredDict, capture_run_messages  # noqa: PLC0415
    from pydantic_ai.exceptions import UsageLimitExceeded  # noqa: PLC0415
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: PLC0415
    from pydantic_ai.providers.openai import OpenAIProvider  # noqa: PLC0415
    from pydantic_ai.settings import ModelSettings  # noqa: PLC0415
    from pydantic_ai.usage import UsageLimits  # noqa: PLC0415

    listed = await gateway.list_tools()
    if limits.autonomy == "read_only":
        listed = [tool for tool in listed if tool.read_only]
    names = ToolNames([tool.qualified for tool in listed])
    # The gateway's client: no key of ours (it sets the definition's), no retries of the SDK.
    # The SDK takes a legacy httpx client at run time; only its annotation says httpx2.
    client = AsyncOpenAI(
        base_url=model.base_url,
        api_key="model-gateway",
        http_client=cast("Any", http_client),
        max_retries=0,
    )
    llm = OpenAIChatModel(model.model, provider=OpenAIProvider(openai_client=client))
    settings = ModelSettings(max_tokens=min(limits.max_tokens, MAX_RESPONSE_TOKENS))
    if limits.tool_choice == "required" and listed:
        settings["extra_body"] = {"tool_choice": "required"}
    output_type: Any = StructuredDict(output_schema, name="answer") if output_schema else str
    agent = Agent(
        llm,
        instructions=instructions,
        output_type=output_type,
        tools=_agent_tools(listed, gateway, names, limits.autonomy),
    )
    usage_limits = UsageLimits(
        request_limit=limits.max_iterations, total_tokens_limit=limits.max_tokens
    )
    stopped: Stopped | None = None
    result: Any = None
    with capture_run_messages() as messages:
        try:
            async with asyncio.timeout(limits.timeout_s):
                run = await agent.run(
                    _prompt(user_input), usage_limits=usage_limits, model_settings=settings
                )
            result = run.output
        except UsageLimitExceeded as err:
            stopped = "max_iterations" if "request" in str(err) else "max_tokens"
        except TimeoutError:
            stopped = "timeout"
        except Exception as err:
            cause = _amos_cause(err)
            if cause is not None:
                raise cause from None
            raise ActionError(
                f"the agent failed: {type(err).__name__}: {err}", type_="AgentFailed"
            ) from None
    issued = {call.receipt.call_id for call in gateway.calls}
    tool_calls = verify_tool_results(
        messages, names=names, signer=signer, scope=gateway.scope, issued=issued
    )
    iterations, usage = _usage(messages)
    return {
        "result": dict(result) if isinstance(result, dict) else result,
        "stopped": stopped,
        "iterations": iterations,
        "tool_calls": tool_calls,
        "usage": usage,
        "model": model.name,
        "revision": model.revision,
    }


_signer: ReceiptSigner | None = None
_signer_lock = threading.Lock()


def install_signer(signer: ReceiptSigner | None) -> ReceiptSigner | None:
    """Use ``signer`` from now on (None: load from ``AMOS_HOME`` on next use); return the old."""
    global _signer  # one signer per worker process, like the AI runtime
    with _signer_lock:
        previous, _signer = _signer, signer
    return previous


def gateway_signer() -> ReceiptSigner:
    """This worker's receipt signer, its key in ``AMOS_HOME`` (made 0600 on first use)."""
    global _signer  # noqa: PLW0603 - see install_signer()
    with _signer_lock:
        if _signer is None:
            _signer = ReceiptSigner.from_file(receipt_key_path(EngineSettings().home))
        return _signer


@implementation("agent.run")
async def agent_run(ctx: ActionContext, params: AgentRunWith) -> dict[str, Any]:
    """Run the step's agent with its model, tools, budgets and autonomy."""
    from amosflow.ai import mcp  # noqa: PLC0415 - see module

    rt = runtime.current()
    context = await runtime.step_context(ctx, rt, purpose="agent")
    model = await asyncio.to_thread(resolve_model, params.model, rt.catalog, folder=context.folder)
    servers = {mcp.split_qualified(name)[0] for name in params.tools}
    entries = await asyncio.to_thread(mcp.load_servers, rt.catalog, servers, context.folder)
    absent = sorted(servers - {entry.server.name for entry in entries})
    if absent:
        # Before any model call or connection: the step names servers its folder lacks.
        raise ActionError(
            f"no MCP server named {', '.join(repr(name) for name in absent)} in this run's"
            " folder: an agent uses only servers defined and approved in the flow's own folder",
            type_="McpServerMissing",
            retryable=False,
        )
    signer = await asyncio.to_thread(gateway_signer)
    limits = AgentLimits(
        max_iterations=params.max_iterations,
        max_tokens=params.max_tokens,
        timeout_s=parse_duration(params.timeout).total_seconds(),
        autonomy=params.autonomy,
        tool_choice=params.tool_choice,
    )
    gateway = mcp.McpGateway(
        entries,
        allowlist=params.tools,
        signer=signer,
        audit=mcp.store_audit(rt.store, "engine:agent"),
        scope=ctx.idempotency_key,
        secrets_in_use=context.secrets,
        egress_policy=context.egress,  # the run's policy: an MCP URL obeys it like any other
    )
    try:
        async with gateway, rt.gateway.http_client(model, context) as http_client:
            return await run_agent(
                model=model,
                http_client=http_client,
                gateway=gateway,
                signer=signer,
                instructions=params.instructions,
                user_input=params.input,
                limits=limits,
                output_schema=params.output_schema,
            )
    except ToolBlockedError:
        raise
    except AmosError as err:
        if isinstance(err, ActionError):
            raise
        raise ActionError(str(err), type_=type(err).__name__, retryable=False) from None
