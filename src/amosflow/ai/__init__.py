"""The AI layer: the model gateway, agentic steps and the governed MCP gateway."""

from amosflow.ai import _agent as agent
from amosflow.ai import _runtime as runtime
from amosflow.ai._gateway import CallContext, ChatResult, ModelGateway, estimate_tokens
from amosflow.ai._models import KIND, ModelDefinition, resolve_model
from amosflow.ai._prompted_tools import to_prompted_request, to_tool_call_response
from amosflow.ai._receipts import Receipt, ReceiptSigner, sha256_of

__all__ = [
    "KIND",
    "CallContext",
    "ChatResult",
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
]
