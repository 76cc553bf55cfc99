"""Every package's public surface is pinned, and every module but the named few is private.

One packaging style (decision 0053): a package exports what others use from its
``__init__`` with ``__all__``; its other modules are ``_private``. The exceptions are modules
something outside Python names: composition roots, modules run with ``python -m``, the API's
routes (one per resource), the CLI's command groups, the engine's client, codec and payload
types, and the action families loaded by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import amosflow

SRC = Path(amosflow.__file__).parent
#: Public modules by design (decision 0053), relative to the package root.
PUBLIC_MODULES = {
    "api/app.py",
    "api/openapi.py",
    "engine/client.py",
    "engine/codec.py",
    "engine/types.py",
    "engine/embedded.py",
    "engine/worker.py",
    "bus/embedded.py",
    "runner/agent/main.py",
    "errors.py",
}
PUBLIC_FOLDERS = ("api/routes/", "cli/", "store/migrations/")
#: The action families, loaded by name: public so a test or a runner can load one alone.
ACTION_FAMILIES = {"browser", "code", "core", "email", "file", "http", "sql"}
EXPORTS = {
    "ai": [
        "CallContext",
        "ChatResult",
        "KIND",
        "ModelDefinition",
        "ModelGateway",
        "Receipt",
        "ReceiptSigner",
        "agent",
        "estimate_tokens",
        "resolve_model",
        "runtime",
        "sha256_of",
        "to_prompted_request",
        "to_tool_call_response",
    ],
    "ai.mcp": [
        "Approval",
        "AuditSink",
        "Finding",
        "GatewayTool",
        "KIND",
        "McpGateway",
        "McpServer",
        "OutboundDlp",
        "ServerEntry",
        "ServerPolicy",
        "ToolCallResult",
        "approve",
        "delete",
        "load_servers",
        "parse_server",
        "pins_of",
        "qualify",
        "read_only",
        "save",
        "split_qualified",
        "store_audit",
        "tool_listing",
        "tool_pin",
    ],
    "api": ["is_public", "problems"],
    "config": [
        "ApiSettings",
        "AuditSettings",
        "BusSettings",
        "CatalogSettings",
        "EngineSettings",
        "FileSettings",
        "IdentitySettings",
        "McpSettings",
        "NodeSettings",
        "NotifySettings",
        "OidcSettings",
        "RunnerSettings",
        "SIGNING_ALGORITHMS",
        "SmtpConnection",
        "SmtpSettings",
        "SqlSettings",
        "StoreSettings",
        "TaskSettings",
        "VaultSettings",
        "check_idp_url",
        "env_secret",
        "env_secret_bound",
        "env_secret_name",
    ],
    "egress": [
        "ANSWER_HEADER",
        "AllowEntry",
        "EgressDeniedError",
        "EgressPolicy",
        "EgressPolicyError",
        "EgressProxy",
        "EgressTransport",
        "MAX_REDIRECTS",
        "Resolver",
        "check_address",
        "check_url",
        "guarded_client",
        "internal_ports",
        "parse_host",
        "resolve",
        "run_policy",
        "worker_allow",
    ],
    "engine.activities": [
        "ActionContext",
        "ArtifactStore",
        "Failure",
        "Performer",
        "SCHEME",
        "base",
        "build_activities",
        "current_run_config",
        "implementation",
        "is_ref",
        "load_implementations",
    ],
    "engine.workflow": ["FlowWorkflow", "Frame"],
    "host": [
        "EmbeddedServer",
        "MAX_KEYS",
        "PRIVATE_MODE",
        "RateLimits",
        "TokenBucket",
        "await_ready",
        "die_with_parent",
        "exposure",
        "find_binary",
        "free_port",
        "home_argument",
        "live_state",
        "port_open",
        "serve_until_signalled",
        "spawn",
        "terminate_group",
        "write_private",
    ],
    "node": [
        "Child",
        "Demotion",
        "NodePlan",
        "ServiceUser",
        "Supervisor",
        "call_as",
        "claim",
        "claim_dir",
        "covers",
        "ensure_service_user",
        "hand_over",
        "needed_paths",
        "private_umask",
        "secure_home",
        "share_home",
    ],
    "sandbox": [
        "BACKENDS",
        "Backend",
        "Limits",
        "Outcome",
        "ProgramNotFoundError",
        "SANDBOX_ENV",
        "SandboxError",
        "SandboxUnavailableError",
        "SandboxedCommand",
        "backend_binary",
        "detect_backend",
        "probe",
        "run_python",
        "sandboxed_command",
    ],
    "services": [
        "ControlPlane",
        "RunRecord",
        "RunWatcher",
        "access",
        "audit_trail",
        "auditing",
        "auth",
        "diff",
        "follow",
        "health",
        "identity",
        "runs",
        "scim",
        "triggers",
        "upgrade",
    ],
    "telemetry": ["redaction"],
    "triggers": [
        "MAX_BODY_BYTES",
        "ScheduleTrigger",
        "WebhookTrigger",
        "parse_trigger",
        "schedules",
        "sign",
        "verify",
    ],
    "vault": [
        "Envelope",
        "FOLDER_PATTERN",
        "KeyFileProvider",
        "KeyProvider",
        "NAME_PATTERN",
        "ReadRecorder",
        "Resolver",
        "Rotation",
        "SecretMetadata",
        "Vault",
        "VaultResolver",
        "VaultSettings",
        "associated_data",
        "bound_names",
        "is_configured",
        "key_file_path",
        "make_provider",
        "open_envelope",
        "open_vault",
        "seal",
    ],
    "catalog": [
        "Catalog",
        "ConfigBundle",
        "EffectiveConfig",
        "Entry",
        "Validator",
        "Version",
        "deep_merge",
        "effective_config",
        "missing_requirements",
        "register_kind",
        "registered_kinds",
    ],
    "console": ["CONTENT_SECURITY_POLICY", "DIST", "mount"],
    "testing": [],
}


def _public_by_design(relative: str) -> bool:
    if relative in PUBLIC_MODULES:
        return True
    if relative.startswith("engine/activities/"):
        return Path(relative).stem in ACTION_FAMILIES
    return relative.startswith(PUBLIC_FOLDERS)


def test_every_module_is_private_unless_something_outside_python_names_it() -> None:
    """A module is `_private` behind its package's ``__init__``, or public by design."""
    public = sorted(
        relative
        for path in SRC.rglob("*.py")
        if not path.name.startswith("_")
        and not _public_by_design(relative := path.relative_to(SRC).as_posix())
    )
    assert public == []


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_the_exports_are_pinned(package: str) -> None:
    """``__all__`` lists exactly the pinned names, and each one exists."""
    module = importlib.import_module(f"amosflow.{package}")
    assert sorted(getattr(module, "__all__", [])) == EXPORTS[package]
    assert all(hasattr(module, name) for name in EXPORTS[package])
