"""The one client for every model call: egress-checked, budgeted, counted and audited.

Every chat-completions request, whether ``ModelGateway.chat`` builds it or an SDK (Pydantic
AI's OpenAI provider) sends it through ``ModelGateway.http_client``, passes one transport
that: checks the URL against the egress policy and the model's own endpoint; reserves the
tokens it may spend against the run's and the folder's budgets (refusing before the call
when they do not fit); audits the prompt; forwards the request; then settles the usage row
and audits the response. Secret values in use are masked in both records (decision 0037).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select, text, update

from amosflow import audit, egress
from amosflow.ai._prompted_tools import to_prompted_request, to_tool_call_response
from amosflow.config import env_secret
from amosflow.errors import ActionError, AIConfigurationError, BudgetExceededError
from amosflow.store import AiUsageRow
from amosflow.telemetry import redaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from amosflow.ai._models import ModelDefinition
    from amosflow.store import Store

__all__ = ["CallContext", "ChatResult", "ModelGateway", "Usage", "estimate_tokens"]

MASK = "***"
#: Held until the reserving transaction ends, so two calls never both see the same headroom.
BUDGET_LOCK_KEY = 0x414D4149  # "AMAI"
LATENCY_EXTENSION = "amos_latency_ms"
CHARS_PER_TOKEN = 3  # a cautious guess: real tokenizers average 3.5-4.5 characters of English
TEMPORARY = 500
TOO_MANY_REQUESTS = 429
ERROR_TEXT_KEPT = 500


@dataclass(frozen=True)
class CallContext:
    """Who a model call is for: the run and step, its folder and flow, and why it is made.

    ``secrets`` are values to mask in the audit (the step's secrets in use); ``egress`` is the
    run's policy, or None for the worker's own (``AMOS_EGRESS_ALLOW``).
    """

    run_id: str = ""
    step_id: str = ""
    folder: str = "default"
    flow: str = ""
    purpose: str = "step"
    secrets: tuple[str, ...] = ()
    egress: egress.EgressPolicy | None = None
    actor: str = "engine:worker"


@dataclass(frozen=True)
class Usage:
    """Tokens one call spent, as the server reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_response(cls, data: Any) -> Usage:
        """Read the OpenAI ``usage`` object; missing numbers count as zero."""
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            return cls()

        def number(key: str) -> int:
            value = usage.get(key)
            return value if isinstance(value, int) and value >= 0 else 0

        prompt, completion = number("prompt_tokens"), number("completion_tokens")
        return cls(prompt, completion, number("total_tokens") or prompt + completion)

    def to_dict(self) -> dict[str, int]:
        """The usage as a JSON object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ChatResult:
    """One chat completion: the text, the raw assistant message, usage, and what produced it."""

    text: str
    message: dict[str, Any]
    usage: Usage
    model: str
    """The definition's name."""
    model_id: str
    revision: str
    latency_ms: int
    finish_reason: str = ""


def estimate_tokens(payload: Any) -> int:
    """A cautious upper guess of the prompt tokens of a request's messages, tools and schema."""
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    return size // CHARS_PER_TOKEN + 1


def _mask(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every secret string replaced by ``***``, recursively."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [_mask(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_mask(str(k), secrets): _mask(v, secrets) for k, v in value.items()}
    return value


def _start_of_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class _Call:
    """What the transport knows about one call in flight."""

    model: ModelDefinition
    context: CallContext
    secrets: tuple[str, ...]
    body: dict[str, Any]
    row_id: int = 0


class _GovernedTransport(httpx.AsyncBaseTransport):
    """Audits, budgets and forwards chat completions for one model and call context."""

    def __init__(self, gateway: ModelGateway, model: ModelDefinition, context: CallContext) -> None:
        self._gateway = gateway
        self._model = model
        self._context = context
        self._policy = context.egress or gateway.worker_policy()
        self._calls = 0
        target = urlsplit(model.chat_url)
        self._target = (target.scheme, target.hostname, target.port, target.path)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward one chat-completions request to the model's endpoint, governed."""
        url = request.url
        if request.method != "POST" or (url.scheme, url.host, url.port, url.path) != (
            self._target[0],
            self._target[1],
            self._target[2],
            self._target[3],
        ):
            raise AIConfigurationError(
                f"the model gateway forwards only POST {self._model.chat_url} for model"
                f" {self._model.name!r}, not {request.method} {url}"
            )
        egress.check_url(str(url), self._policy)
        try:
            body = json.loads(await request.aread())
        except ValueError:
            raise AIConfigurationError("a chat-completions request must be JSON") from None
        if not isinstance(body, dict):
            raise AIConfigurationError("a chat-completions request must be a JSON object")
        if body.get("stream"):
            raise AIConfigurationError("the model gateway does not forward streamed completions")
        body["model"] = self._model.model
        for key, value in self._model.parameters.items():
            body.setdefault(key, value)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in {"content-length", "authorization", "host"}
        }
        secrets = self._context.secrets
        if self._model.api_key_secret:
            key = await asyncio.to_thread(
                self._gateway.resolve_secret,
                self._model.api_key_secret,
                self._context.run_id,
                self._context.step_id,
            )
            redaction.hold(key)  # masked in every log line while the step runs
            headers["Authorization"] = f"Bearer {key}"
            secrets = (*secrets, key)
        prompted = self._model.tool_calls == "prompted" and bool(body.get("tools"))
        if prompted:
            body = to_prompted_request(body)
        call = _Call(self._model, self._context, secrets, body)
        await asyncio.to_thread(self._gateway.open_call, call)
        forwarded = httpx.Request(
            "POST",
            url,
            headers=headers,
            content=json.dumps(body).encode(),
            extensions=request.extensions,
        )
        started = time.perf_counter()
        try:
            inner = self._gateway.pooled_transport(self._policy)
            response = await inner.handle_async_request(forwarded)
            content = await response.aread()
        except BaseException as err:
            latency = int((time.perf_counter() - started) * 1000)
            await asyncio.to_thread(
                self._gateway.close_call, call, None, latency, f"{type(err).__name__}: {err}"
            )
            raise
        latency = int((time.perf_counter() - started) * 1000)
        await asyncio.to_thread(
            self._gateway.close_call, call, (response.status_code, content), latency, None
        )
        if prompted and response.status_code == httpx.codes.OK:
            self._calls += 1
            content = to_tool_call_response(content, self._calls)
        kept = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in {"content-length", "content-encoding", "transfer-encoding"}
        }
        return httpx.Response(
            response.status_code,
            headers=kept,
            content=content,
            request=request,
            extensions={**response.extensions, LATENCY_EXTENSION: latency},
        )

    async def aclose(self) -> None:
        """Nothing to close: the connection pool belongs to the gateway."""


@dataclass
class ModelGateway:
    """The one client for every model call (steps now; authoring and self-heal later).

    ``store`` keeps usage counters and the audit trail; ``resolve_secret`` reads a
    definition's API key from the vault of the run's folder. Connection pools are kept per
    event loop and egress policy, so a connection opened under one policy never serves
    another.
    """

    store: Store
    resolve_secret: Callable[[str, str, str], str] = env_secret
    extra_allow: tuple[str, ...] | None = None
    _pools: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[egress.EgressPolicy, egress.EgressTransport]
    ] = field(default_factory=weakref.WeakKeyDictionary)

    def worker_policy(self) -> egress.EgressPolicy:
        """The policy of calls made outside a run: the worker's own allow entries only."""
        allow = egress.worker_allow() if self.extra_allow is None else self.extra_allow
        return egress.EgressPolicy.from_config(
            {}, extra_allow=allow, internal_ports=egress.internal_ports()
        )

    def pooled_transport(self, policy: egress.EgressPolicy) -> egress.EgressTransport:
        """The egress-guarded connection pool of ``policy`` on the running loop."""
        pools = self._pools.setdefault(asyncio.get_running_loop(), {})
        transport = pools.get(policy)
        if transport is None:
            transport = pools[policy] = egress.EgressTransport(policy)
        return transport

    async def aclose(self) -> None:
        """Close the running loop's connection pools."""
        pools = self._pools.pop(asyncio.get_running_loop(), {})
        for transport in pools.values():
            await transport.aclose()

    def open_call(self, call: _Call) -> None:
        """Reserve the call's tokens and audit its prompt (blocking: run it in a thread)."""
        _open_call(self.store, call)

    def close_call(
        self,
        call: _Call,
        answer: tuple[int, bytes] | None,
        latency_ms: int,
        failure: str | None,
    ) -> None:
        """Settle the call's usage and audit its response (blocking: run it in a thread)."""
        _close_call(self.store, call, answer, latency_ms, failure)

    def http_client(self, model: ModelDefinition, context: CallContext) -> httpx.AsyncClient:
        """An httpx client whose every chat-completions request is governed like ``chat``.

        Give it to an OpenAI-compatible SDK with ``base_url=model.base_url`` and no retries
        of its own: a refusal (budget, egress, configuration) is raised as the AmosError it
        is, and a retry would only be refused again.
        """
        return httpx.AsyncClient(
            transport=_GovernedTransport(self, model, context),
            timeout=model.timeout_s,
            trust_env=False,
            follow_redirects=False,
        )

    async def chat(
        self,
        model: ModelDefinition,
        messages: list[dict[str, Any]],
        *,
        context: CallContext,
        response_format: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatResult:
        """Send one chat completion and return its first choice.

        Transport failures and 5xx/429 answers raise a retryable ActionError; other refusals
        by the server are not retryable.
        """
        body: dict[str, Any] = {"model": model.model, "messages": messages}
        optional = {
            "response_format": response_format,
            "tools": tools,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        body |= {k: v for k, v in optional.items() if v is not None}
        async with self.http_client(model, context) as client:
            try:
                response = await client.post(model.chat_url, json=body)
            except httpx.TimeoutException:
                raise ActionError(
                    f"model {model.name!r} did not answer within {model.timeout_s:g} s",
                    type_="ModelTimeout",
                ) from None
            except httpx.HTTPError as err:
                raise ActionError(
                    f"cannot reach model {model.name!r}: {type(err).__name__}: {err}",
                    type_="ModelUnavailable",
                ) from None
        return _result(model, response, context.secrets)


def _result(
    model: ModelDefinition, response: httpx.Response, secrets: tuple[str, ...]
) -> ChatResult:
    if response.status_code >= httpx.codes.BAD_REQUEST:
        shown = _mask(response.text[:ERROR_TEXT_KEPT], secrets)
        temporary = response.status_code >= TEMPORARY or response.status_code == TOO_MANY_REQUESTS
        raise ActionError(
            f"model {model.name!r} answered {response.status_code}: {shown}",
            type_="ModelUnavailable" if temporary else "ModelRejected",
            retryable=temporary,
        )
    try:
        data = response.json()
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ActionError(
            f"model {model.name!r} answered something that is not a chat completion",
            type_="ModelRejected",
        ) from None
    content = message.get("content") if isinstance(message, dict) else None
    return ChatResult(
        text=content if isinstance(content, str) else "",
        message=message if isinstance(message, dict) else {},
        usage=Usage.from_response(data),
        model=model.name,
        model_id=model.model,
        revision=model.revision,
        latency_ms=int(response.extensions.get(LATENCY_EXTENSION, 0)),
        finish_reason=str(choice.get("finish_reason") or ""),
    )


def _used(session: Session, model: str, **where: Any) -> int:
    query = select(func.coalesce(func.sum(AiUsageRow.total_tokens), 0)).where(
        AiUsageRow.model == model
    )
    for column, value in where.items():
        if column == "since":
            query = query.where(AiUsageRow.at >= value)
        else:
            query = query.where(getattr(AiUsageRow, column) == value)
    return int(session.execute(query).scalar_one())


def _headroom(session: Session, call: _Call) -> tuple[str, int, int] | None:
    """The tightest budget as (scope, budget, used), or None when the model has none."""
    model, ctx = call.model, call.context
    limits: list[tuple[str, int, int]] = []
    if model.budget_run_tokens is not None and ctx.run_id:
        used = _used(session, model.name, run_id=ctx.run_id)
        limits.append((f"run {ctx.run_id!r}", model.budget_run_tokens, used))
    if model.budget_folder_tokens is not None:
        since = _start_of_day(datetime.now(UTC))
        used = _used(session, model.name, folder=ctx.folder, since=since)
        limits.append((f"folder {ctx.folder!r} today", model.budget_folder_tokens, used))
    return min(limits, key=lambda limit: limit[1] - limit[2]) if limits else None


def _prompt_details(call: _Call) -> dict[str, Any]:
    body = call.body
    shown: dict[str, Any] = {
        k: body[k]
        for k in ("messages", "response_format", "max_tokens", "temperature")
        if k in body
    }
    if "tools" in body:
        shown["tools"] = [
            (t.get("function") or {}).get("name", "") if isinstance(t, dict) else ""
            for t in body["tools"]
        ]
    return _ids(call) | {"request": _mask(shown, call.secrets)}


def _ids(call: _Call) -> dict[str, Any]:
    ctx = call.context
    return {
        "run_id": ctx.run_id,
        "step": ctx.step_id,
        "flow": ctx.flow,
        "purpose": ctx.purpose,
        "model_id": call.model.model,
        "revision": call.model.revision,
    }


def _open_call(store: Store, call: _Call) -> None:
    """Reserve the call's tokens and audit its prompt, in one transaction; refuse past a budget."""
    estimate = estimate_tokens(
        [call.body.get("messages"), call.body.get("tools"), call.body.get("response_format")]
    )
    resource = f"models/{call.model.name}"
    refusal: BudgetExceededError | None = None
    with store.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BUDGET_LOCK_KEY})
        limit = _headroom(session, call)
        if limit is not None:
            scope, budget, used = limit
            left = budget - used - estimate
            wanted = call.body.get("max_tokens")
            if (isinstance(wanted, int) and wanted > left) or left < 1:
                refusal = BudgetExceededError(
                    f"model {call.model.name!r}: the token budget of {scope} is {budget};"
                    f" {used} are spent and this call may need {estimate} prompt tokens"
                    + (f" plus up to {wanted}" if isinstance(wanted, int) else "")
                    + ", so it was not made",
                    scope=scope,
                    budget=budget,
                    used=used,
                )
            elif not isinstance(wanted, int):
                call.body["max_tokens"] = left  # the answer may not run past the budget
        if refusal is not None:
            audit.append(
                session,
                actor=call.context.actor,
                action="ai.prompt",
                resource=resource,
                folder=call.context.folder,
                outcome="denied",
                details=_prompt_details(call) | {"reason": str(refusal)},
            )
        else:
            reserved = estimate + int(call.body.get("max_tokens") or 0)
            row = AiUsageRow(
                model=call.model.name,
                model_id=call.model.model,
                revision=call.model.revision,
                purpose=call.context.purpose,
                run_id=call.context.run_id,
                step_id=call.context.step_id,
                flow=call.context.flow,
                folder=call.context.folder,
                total_tokens=reserved,
                outcome="pending",
            )
            session.add(row)
            session.flush()
            call.row_id = row.id
            audit.append(
                session,
                actor=call.context.actor,
                action="ai.prompt",
                resource=resource,
                folder=call.context.folder,
                details=_prompt_details(call) | {"usage_id": row.id},
            )
    if refusal is not None:
        raise refusal


def _close_call(
    store: Store,
    call: _Call,
    answer: tuple[int, bytes] | None,
    latency_ms: int,
    failure: str | None,
) -> None:
    """Settle the usage row with what the call spent and audit the response."""
    usage = Usage()
    details = _ids(call) | {"usage_id": call.row_id, "latency_ms": latency_ms}
    outcome = "error"
    if answer is not None:
        status, content = answer
        details["status"] = status
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if status < httpx.codes.BAD_REQUEST and isinstance(data, dict):
            outcome = "ok"
            usage = Usage.from_response(data)
            choices = data.get("choices")
            first = choices[0] if isinstance(choices, list) and choices else {}
            details["message"] = _mask(first.get("message"), call.secrets)
            details["finish_reason"] = first.get("finish_reason")
        else:
            details["error"] = _mask(
                content[:ERROR_TEXT_KEPT].decode(errors="replace"), call.secrets
            )
    else:
        details["error"] = _mask(failure or "", call.secrets)
    details["usage"] = usage.to_dict()
    with store.session() as session:
        session.execute(
            update(AiUsageRow)
            .where(AiUsageRow.id == call.row_id)
            .values(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                latency_ms=latency_ms,
                outcome=outcome,
            )
        )
        audit.append(
            session,
            actor=call.context.actor,
            action="ai.response",
            resource=f"models/{call.model.name}",
            folder=call.context.folder,
            outcome="ok" if outcome == "ok" else "error",
            details=details,
        )
