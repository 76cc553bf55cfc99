"""`llm.generate` on the flow worker: prompt, schema-constrained answer, validation, repair.

The action runs on the node's flow worker, next to the catalog's model definitions, the
usage counters and the audit trail, never on a runner (decision 0038).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import jsonschema
from temporalio import activity

from amosflow.ai import _runtime as runtime
from amosflow.ai._gateway import ChatResult, Usage
from amosflow.ai._models import resolve_model
from amosflow.engine.activities import ActionContext, implementation
from amosflow.errors import ActionError

if TYPE_CHECKING:
    from amosflow.dsl.actions import LlmGenerateWith

#: Extra attempts after an answer that does not validate; each costs one more model call.
MAX_REPAIRS = 2
SCHEMA_NAME = "answer"
PROBLEM_CHARS = 300


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI ``response_format`` that binds the answer to ``schema``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": True},
    }


def schema_problem(text: str, validator: jsonschema.protocols.Validator) -> tuple[Any, str | None]:
    """The parsed answer and why it does not satisfy the schema (None when it does)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        return None, f"the answer is not JSON ({err})"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return value, None
    where = "/" + "/".join(str(p) for p in error.absolute_path)
    return value, f"at {where}: {error.message[:PROBLEM_CHARS]}"


def _messages(params: LlmGenerateWith) -> list[dict[str, Any]]:
    """The conversation; with a schema, the system message also states the schema.

    Constrained decoding keeps the tokens inside the schema but not the whitespace between
    them: small models can spend their whole ``max_tokens`` on indentation. Asking for
    compact JSON and showing the schema keeps answers short and on topic.
    """
    system = [params.system] if params.system else []
    if params.schema_ is not None:
        system.append(
            "Reply with only compact JSON on one line (no line breaks, no indentation) that"
            " satisfies this JSON Schema: " + json.dumps(params.schema_, separators=(",", ":"))
        )
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": "\n\n".join(system)}] if system else []
    )
    messages.append({"role": "user", "content": params.prompt})
    return messages


def _add(total: Usage, more: Usage) -> Usage:
    return Usage(
        total.prompt_tokens + more.prompt_tokens,
        total.completion_tokens + more.completion_tokens,
        total.total_tokens + more.total_tokens,
    )


def _output(result: ChatResult, usage: Usage, attempts: int) -> dict[str, Any]:
    return {
        "text": result.text,
        "model": result.model,
        "model_id": result.model_id,
        "revision": result.revision,
        "usage": usage.to_dict(),
        "attempts": attempts,
    }


@implementation("llm.generate")
async def generate(ctx: ActionContext, params: LlmGenerateWith) -> dict[str, Any]:
    """Ask the model; with a schema, return its validated JSON or fail with SchemaMismatch."""
    if not activity.in_activity():
        raise ActionError(
            "llm.generate runs on the node's flow worker, next to the model definitions and"
            " budgets; remove the step's `runner` selector",
            type_="WrongPlacement",
            retryable=False,
        )
    services = await asyncio.to_thread(runtime.current)
    context = await runtime.step_context(ctx, services)
    model = await asyncio.to_thread(
        resolve_model, params.model, services.catalog, folder=context.folder
    )
    first = messages = _messages(params)
    schema = params.schema_
    validator = jsonschema.Draft202012Validator(schema) if schema is not None else None
    usage = Usage()
    problem: str | None = None
    for attempt in range(1, MAX_REPAIRS + 2):
        result = await services.gateway.chat(
            model,
            messages,
            context=context,
            response_format=response_format(schema) if schema is not None else None,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
        )
        usage = _add(usage, result.usage)
        if validator is None:
            return _output(result, usage, attempt)
        value, problem = schema_problem(result.text, validator)
        if problem is None:
            return _output(result, usage, attempt) | {"json": value}
        ctx.heartbeat(attempt)
        if result.finish_reason == "length" and value is None:
            continue  # cut off mid-answer: nothing to correct, ask the same question again
        messages = [
            *first,
            {"role": "assistant", "content": result.text},
            {
                "role": "user",
                "content": f"That answer is invalid: {problem}. Reply again with only JSON"
                " that satisfies the schema.",
            },
        ]
    raise ActionError(
        f"model {model.name!r} gave no answer matching the schema in {MAX_REPAIRS + 1}"
        f" attempts; last problem: {problem}",
        type_="SchemaMismatch",
        retryable=False,
    )
