"""The payload dataclasses carry real annotations, which the SDK reads on every conversion."""

from __future__ import annotations

import dataclasses

from amosflow.engine import types


def test_every_payload_dataclass_has_evaluated_annotations() -> None:
    """No payload annotation is a string: the SDK would compile it again for every payload.

    `temporalio` converts each activity argument and result with `typing.get_type_hints`;
    string annotations (from `from __future__ import annotations`) made that about 4 times slower.
    """
    payloads = [
        value
        for value in vars(types).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value)
    ]
    assert {p.__name__ for p in payloads} >= {"ActionCall", "ActionResult", "RunInput"}
    for payload in payloads:
        for name, annotation in payload.__annotations__.items():
            assert not isinstance(annotation, str), f"{payload.__name__}.{name}: {annotation!r}"
