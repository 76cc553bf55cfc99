"""Print the API's OpenAPI document: `python -m amosflow.api.openapi > openapi.json`."""

from __future__ import annotations

import json
import sys

from amosflow.api.app import openapi_document


def render() -> str:
    """The OpenAPI document as the stable, pretty JSON kept in the repository."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
