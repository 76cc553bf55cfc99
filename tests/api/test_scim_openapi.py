"""openapi.json is a valid OpenAPI document, with patterns every client can compile.

OpenAPI patterns are ECMA-262. Without the ``regress`` package, ``jsonschema`` checks them
with Python's ``re``, which accepts Python-only syntax such as the inline flag ``(?i)`` that
the SCIM PATCH ``op`` once carried; generated clients choked on it. With ``regress``
installed the validator compiles them as a client does, so such a pattern cannot come back.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import regress
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

REPO_FILE = Path(__file__).resolve().parents[2] / "openapi.json"


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(REPO_FILE.read_text(encoding="utf-8"))
    return loaded


def test_openapi_json_is_valid() -> None:
    """openapi-spec-validator accepts the repository's openapi.json."""
    validate(_document())


def test_a_python_only_pattern_is_refused() -> None:
    """The check has teeth: the old `(?i)` pattern fails, as it does in an ECMA-262 client."""
    with pytest.raises(regress.RegressError):
        regress.Regex("(?i)^(add|remove|replace)$")
    broken = copy.deepcopy(_document())
    broken["components"]["schemas"]["PythonOnly"] = {
        "type": "string",
        "pattern": "(?i)^(add|remove|replace)$",
    }
    with pytest.raises(OpenAPIValidationError):
        validate(broken)
