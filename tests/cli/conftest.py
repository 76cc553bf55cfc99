"""The CLI tests that talk to the API reuse the API tests' real node."""

from tests.api.conftest import node  # noqa: F401
