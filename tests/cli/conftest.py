"""The CLI tests that talk to the API reuse the API tests' real node."""

from tests.api.conftest import nats_server, node  # noqa: F401
