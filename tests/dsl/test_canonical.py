"""Canonical JSON (RFC 8785) and content hashes."""

from __future__ import annotations

import hashlib
import json

import pytest

from amosflow.dsl import Flow, canonical_json, content_hash
from tests.dsl.documents import dsl_example

# The example of RFC 8785 section 3.2.2, as text so the numbers stay as written.
RFC_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_rfc_8785_example() -> None:
    """The RFC's own example canonicalises byte for byte."""
    assert canonical_json(json.loads(RFC_INPUT)) == RFC_OUTPUT.encode()


def test_keys_are_sorted() -> None:
    """Object keys come out in code-unit order with no whitespace."""
    assert canonical_json({"b": 1, "a": [1, {"d": 0, "c": None}]}) == (
        b'{"a":[1,{"c":null,"d":0}],"b":1}'
    )


def test_content_hash_is_sha256_of_the_canonical_json() -> None:
    """The hash is sha256: and the hex digest of the canonical bytes."""
    digest = hashlib.sha256(b'{"a":1}').hexdigest()
    assert content_hash({"a": 1}) == f"sha256:{digest}"


def test_content_hash_ignores_key_order() -> None:
    """Reordering keys does not change the hash."""
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})


def test_content_hash_of_a_flow_is_that_of_its_document() -> None:
    """A Flow hashes as its serialised document."""
    flow = Flow.model_validate(dsl_example())
    assert content_hash(flow) == content_hash(flow.to_document())


def test_non_json_numbers_are_refused() -> None:
    """NaN has no canonical form."""
    with pytest.raises(ValueError):
        canonical_json(float("nan"))
