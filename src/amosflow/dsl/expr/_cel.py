"""The CEL library, imported without its interactive shell.

The `common-expression-language` package's ``__init__`` imports ``cel.cli``, a REPL built on
prompt_toolkit and typer: about 20 MiB in every process that evaluates an expression (the
API, the worker, each runner), for a shell we never start. A placeholder module stands in
for it before the package is imported; everything else of the library is the real thing.
"""

from __future__ import annotations

import sys
import types

if "cel" not in sys.modules:
    sys.modules.setdefault("cel.cli", types.ModuleType("cel.cli", "The CEL shell: not loaded."))

import cel

__all__ = ["cel"]
