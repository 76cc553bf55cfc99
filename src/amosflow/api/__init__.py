"""The REST API of the control plane under /api/v1 (FastAPI, OpenAPI 3.1)."""

from amosflow.api import _problems as problems
from amosflow.api._security import is_public

__all__ = [
    "is_public",
    "problems",
]
