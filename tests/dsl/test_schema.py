"""The generated JSON Schema accepts what the validator accepts and rejects what it rejects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from amosflow.dsl import all_actions, flow_json_schema, validate_flow
from tests.dsl.documents import dsl_example, every_step_type, single_step

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))
ECHO = {"id": "x", "type": "action", "action": "core.echo", "with": {"value": 1}}
HTTP = {"id": "x", "type": "action", "action": "http.request"}

INVALID: dict[str, dict[str, Any]] = {
    "unknown action": single_step({**ECHO, "action": "ftp.get"}),
    "with of the wrong type": single_step({**HTTP, "with": {"url": 5}}),
    "with missing its required key": single_step(HTTP),
    "with with an unknown key": single_step({**ECHO, "with": {"value": 1, "extra": 2}}),
    "with json and body": single_step({**HTTP, "with": {"url": "u", "json": 1, "body": "b"}}),
    "unknown step type": single_step({"id": "x", "type": "teleport"}),
    "step without a type": single_step({"id": "x", "action": "core.echo", "with": {"value": 1}}),
    "unknown key": {**dsl_example(), "extra": True},
    "while without max_iterations": single_step(
        {"id": "x", "type": "while", "condition": True, "steps": []}
    ),
    "wait with both duration and until": single_step(
        {"id": "x", "type": "wait", "duration": "1s", "until": "2030-01-01T00:00:00Z"}
    ),
    "bad duration": single_step({**ECHO, "timeout": "soon"}),
    "bad step id": single_step({**ECHO, "id": "Bad"}),
    "bad flow name": {**dsl_example(), "name": "Invoice Approval"},
    "no steps": {**dsl_example(), "steps": []},
    "string max_attempts": single_step({**ECHO, "retry": {"max_attempts": "3"}}),
}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(flow_json_schema())


def test_schema_is_valid_json_schema_2020_12() -> None:
    """The generated schema passes the 2020-12 meta-schema."""
    Draft202012Validator.check_schema(flow_json_schema())


def test_schema_names_its_dialect_and_id() -> None:
    """The schema declares $schema, $id and a title."""
    schema = flow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert "amos.flow/v1" in schema["title"]


def test_schema_binds_each_action_to_its_with() -> None:
    """Every registered action has its with schema in the document schema."""
    definitions = flow_json_schema()["$defs"]
    for spec in all_actions():
        assert f"with.{spec.name}" in definitions


def test_schema_is_json() -> None:
    """The schema serialises to JSON as is."""
    assert json.loads(json.dumps(flow_json_schema())) == flow_json_schema()


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_examples_are_valid(path: Path, validator: Draft202012Validator) -> None:
    """Every example flow passes both the schema and validate_flow."""
    document = json.loads(path.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(document)) == []
    assert validate_flow(document) == []


@pytest.mark.parametrize("document", [dsl_example(), every_step_type()], ids=["dsl", "every"])
def test_built_documents_are_valid(
    document: dict[str, Any], validator: Draft202012Validator
) -> None:
    """The documents built in the tests pass the schema."""
    assert list(validator.iter_errors(document)) == []


@pytest.mark.parametrize("document", list(INVALID.values()), ids=list(INVALID))
def test_invalid_documents_are_rejected_by_both(
    document: dict[str, Any], validator: Draft202012Validator
) -> None:
    """An invalid document fails the schema and validate_flow alike."""
    assert not validator.is_valid(document)
    assert validate_flow(document) != []
