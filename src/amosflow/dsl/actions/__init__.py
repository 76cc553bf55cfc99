"""The closed vocabulary of actions: one private module per family registers its ActionSpecs."""

from __future__ import annotations

import importlib

from amosflow.dsl.actions._agent import AgentRunWith
from amosflow.dsl.actions._browser import (
    BrowserClick,
    BrowserCommand,
    BrowserExtract,
    BrowserFill,
    BrowserGoto,
    BrowserRunWith,
    BrowserScreenshot,
    BrowserSelect,
    BrowserWaitFor,
)
from amosflow.dsl.actions._code import OUTPUT_CAP_BYTES
from amosflow.dsl.actions._core import EchoWith
from amosflow.dsl.actions._file import INLINE_READ_BYTES, MAX_READ_BYTES, file_mode, path_problem
from amosflow.dsl.actions._llm import LlmGenerateWith
from amosflow.dsl.actions._registry import (
    BUILTIN_MODULES,
    ActionSpec,
    Duration,
    Expr,
    WithModel,
    all_actions,
    bounded_timeout,
    get_action,
    register,
    validate_with,
)

__all__ = [
    "BUILTIN_MODULES",
    "INLINE_READ_BYTES",
    "MAX_READ_BYTES",
    "OUTPUT_CAP_BYTES",
    "ActionSpec",
    "AgentRunWith",
    "BrowserClick",
    "BrowserCommand",
    "BrowserExtract",
    "BrowserFill",
    "BrowserGoto",
    "BrowserRunWith",
    "BrowserScreenshot",
    "BrowserSelect",
    "BrowserWaitFor",
    "Duration",
    "EchoWith",
    "Expr",
    "LlmGenerateWith",
    "WithModel",
    "all_actions",
    "bounded_timeout",
    "file_mode",
    "get_action",
    "path_problem",
    "register",
    "validate_with",
]

for _family in BUILTIN_MODULES:
    importlib.import_module(f"{__name__}._{_family}")
