"""The one error hierarchy of AMOS FLOW.

Every error the product raises on purpose is an ``AmosError`` with a stable ``code``; the
CLI maps them to exit codes (and, later, the API to problem+json) in exactly one place.

    AmosError
    ├── ValidationFailedError      a flow document or run inputs are invalid (many diagnostics)
    ├── ExpressionError            a CEL expression does not compile or fails to evaluate
    │   └── ExpressionBudgetError  an expression would exceed its cost or size budget
    ├── FlowRunError               a run ended failed, cancelled or timed out
    ├── ActionError                an action (side effect) failed
    │   ├── UnknownActionError     the action name is not in the registry
    │   ├── AIConfigurationError   an AI step names no usable model definition
    │   ├── BudgetExceededError    a model call would pass its run's or folder's token budget
    │   ├── ToolBlockedError       the MCP gateway refused a tool call (scope, pin, DLP, chain)
    │   └── ReceiptError           a tool result has no valid receipt from the gateway
    ├── ArtifactError              the artifact store cannot read or write a value
    ├── McpError                   an MCP server cannot be started, reached, listed or called
    ├── EngineError                Temporal (embedded or remote) cannot be reached or started
    ├── NotFoundError              a flow, run, version or other object does not exist
    ├── ConflictError              the change clashes with the current state
    │   ├── StaleLeaseError        a runner reported on a job lease it no longer holds
    │   └── TaskClosedError        a human task is already decided, or its run has ended
    ├── BusError                   the NATS event bus cannot be started, reached or written
    ├── StoreError                 the relational store cannot be opened, reached or migrated
    ├── CatalogError               the Git catalog cannot be opened, read or synchronised
    ├── AuditError                 the audit trail cannot be written, or its keys are unsafe
    ├── AuthenticationError        the caller could not be identified (no, bad or dead credentials)
    │   └── RateLimitedError       too many attempts from one address or on one account
    ├── PermissionDeniedError      the caller is known but may not do this
    │   └── FourEyesError          the starter of a run may not decide its own tasks
    └── VaultError                 a secret cannot be sealed or opened, or key material is unsafe
        ├── VaultSealedError       the vault has no key material, so no value can be read
        └── PayloadCodecError      an encrypted Temporal payload is altered or its key unknown
"""

from __future__ import annotations

from dataclasses import dataclass, field


class AmosError(Exception):
    """Base of every error AMOS FLOW raises on purpose."""

    code = "amos.error"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a document, located by its JSON Pointer (RFC 6901)."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class ValidationFailedError(AmosError):
    """A document (flow, inputs) broke its contract; carries every diagnostic found."""

    code = "amos.validation"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.pointer, d.message))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ExpressionError(AmosError):
    """A CEL expression failed to compile or evaluate; names the pointer of the expression."""

    code = "amos.expression"

    def __init__(self, message: str, *, pointer: str = "", source: str = "") -> None:
        self.pointer = pointer
        self.source = source
        self.reason = message
        super().__init__(f"{pointer}: {message}" if pointer else message)


class ExpressionBudgetError(ExpressionError):
    """An expression would exceed its evaluation budget (cost or size)."""

    code = "amos.expression.budget"


@dataclass
class FlowRunError(AmosError):
    """A run did not complete; ``status`` is failed, cancelled or timed_out."""

    status: str
    message: str
    step: str | None = None
    type: str = "FlowFailed"
    code: str = field(default="amos.run", init=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)


class ActionError(AmosError):
    """An action failed; ``retryable`` tells the engine whether another attempt may help."""

    code = "amos.action"

    def __init__(self, message: str, *, type_: str = "ActionError", retryable: bool = True) -> None:
        self.type = type_
        self.retryable = retryable
        super().__init__(message)


class UnknownActionError(ActionError):
    """The flow names an action that no module registered."""

    code = "amos.action.unknown"

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown action {name!r}", type_="UnknownAction", retryable=False)


class AIConfigurationError(ActionError):
    """An AI step cannot run as configured: no such model, or one it may not use.

    There is no default endpoint, so this is how an unconfigured install fails closed; the
    message says what to configure.
    """

    code = "amos.ai.configuration"

    def __init__(self, message: str) -> None:
        super().__init__(message, type_="AIConfigurationError", retryable=False)


class BudgetExceededError(ActionError):
    """A model call was refused because it would exceed a run's or a folder's token budget."""

    code = "amos.ai.budget"

    def __init__(self, message: str, *, scope: str, budget: int, used: int) -> None:
        self.scope = scope
        self.budget = budget
        self.used = used
        super().__init__(message, type_="BudgetExceeded", retryable=False)


class ToolBlockedError(ActionError):
    """The MCP gateway refused a tool call; ``reason`` says which guard did (never a value).

    Reasons: ``scope`` (not in the step's or the server's allowlist), ``unapproved`` (the
    server or the tool was never approved, or changed since: the rug-pull guard), ``dlp``
    (the arguments carry a secret in use or match a configured pattern), ``chain`` (data
    read from one server may not flow to this one) and ``checkpoint`` (a tool with side
    effects needs a human checkpoint the step's autonomy does not give).
    """

    code = "amos.ai.tool_blocked"

    def __init__(self, message: str, *, tool: str, reason: str) -> None:
        self.tool = tool
        self.reason = reason
        super().__init__(message, type_="ToolBlocked", retryable=False)


class ReceiptError(ActionError):
    """A tool result the agent reported has no valid gateway receipt: it cannot be trusted."""

    code = "amos.ai.receipt"

    def __init__(self, message: str) -> None:
        super().__init__(message, type_="ReceiptInvalid", retryable=False)


class McpError(AmosError):
    """An MCP server could not be started, reached, listed or called."""

    code = "amos.mcp"


class ArtifactError(AmosError):
    """The content-addressed artifact store could not read or write a value."""

    code = "amos.artifact"


class EngineError(AmosError):
    """The Temporal backbone could not be started or reached."""

    code = "amos.engine"


class NotFoundError(AmosError):
    """A named object (flow, version, run, trigger …) does not exist."""

    code = "amos.not_found"


class ConflictError(AmosError):
    """A change clashes with the current state (already exists, already finished …)."""

    code = "amos.conflict"


class StaleLeaseError(ConflictError):
    """A runner renewed or completed a job lease it no longer holds (wrong fence, expired).

    The fencing token makes a late report from a runner that lost its lease (a pause, a
    partition, a revocation) harmless: the store refuses it instead of overwriting the
    result of the runner that holds the job now. ``current_fence`` is the job's fence at
    the time of the refusal (None when the job does not exist).
    """

    code = "amos.lease.stale"

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        runner_id: str,
        fence: int,
        current_fence: int | None,
    ) -> None:
        self.job_id = job_id
        self.runner_id = runner_id
        self.fence = fence
        self.current_fence = current_fence
        super().__init__(message)


class TaskClosedError(ConflictError):
    """A decision, claim or unclaim came for a human task that no longer takes one."""

    code = "amos.task.closed"


class BusError(AmosError):
    """The NATS JetStream event bus could not be started, reached or written to.

    ``retryable`` is false when the server refused the message itself, so sending it again
    cannot help.
    """

    code = "amos.bus"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class StoreError(AmosError):
    """The relational store could not be opened, reached or migrated."""

    code = "amos.store"


class CatalogError(AmosError):
    """The Git catalog could not be opened, read, or synchronised with its remote."""

    code = "amos.catalog"


class AuditError(AmosError):
    """The audit trail could not be written or read, or its key files are missing or unsafe.

    Raised by ``audit.append`` on any database failure so that the change it was recording
    fails with it (fail closed) instead of proceeding unaudited.
    """

    code = "amos.audit"


class AuthenticationError(AmosError):
    """The caller could not be identified: no credentials, or bad, expired or revoked ones.

    Its message is deliberately generic towards the caller (the API answers 401 with it);
    the reason goes to the audit trail, never to the one who failed.
    """

    code = "amos.unauthenticated"


class RateLimitedError(AuthenticationError):
    """Too many attempts from one address or on one account; ``retry_after`` in seconds."""

    code = "amos.rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermissionDeniedError(AmosError):
    """The caller is identified but its roles do not allow this action on this resource."""

    code = "amos.forbidden"


class VaultError(AmosError):
    """A secret could not be encrypted or decrypted, or the vault's key material is unsafe.

    Its message names the secret and the failing part, never a key or a value.
    """

    code = "amos.vault"


class VaultSealedError(VaultError):
    """The vault has no key material (it is sealed), so it fails closed on every read."""

    code = "amos.vault.sealed"


class PayloadCodecError(VaultError):
    """An encrypted Temporal payload failed authentication or names a codec key we lack.

    Its message names the codec key id and the failing part, never payload bytes.
    """

    code = "amos.vault.codec"


class FourEyesError(PermissionDeniedError):
    """The person who started a run tried to decide one of its human tasks (four-eyes)."""

    code = "amos.task.four_eyes"
