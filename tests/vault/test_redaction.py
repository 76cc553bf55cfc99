"""Process-wide redaction: a secret in use is masked in every log record, then forgotten."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from amosflow.config import EngineSettings, env_secret
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.telemetry import redaction
from amosflow.testing import run_flow
from tests.vault.conftest import CANARY

log = logging.getLogger("tests.redaction")


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """A real handler on the root logger, with the filter installed as a process does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    redaction.install()
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def _refuse(value: str) -> None:
    raise ValueError(f"upstream refused {value}")


def _log_everywhere(value: str) -> None:
    """Put ``value`` in a message, in arguments, in an exception text and its traceback."""
    log.warning("token in the message: %s", value)
    log.warning("token in the arguments: %s %r", value, {"auth": value})
    log.warning(f"token formatted in: {value}")  # noqa: G004 - exactly what must not leak
    try:
        _refuse(value)
    except ValueError:
        log.exception("call failed")


def test_values_held_by_a_step_are_masked_then_forgotten(
    log_text: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the step runs the canary is masked everywhere; after it, nothing is held."""
    monkeypatch.setenv("AMOS_SECRET_API_TOKEN", CANARY)
    with redaction.step():
        redaction.hold(env_secret("api.token"))  # what the action wrapper does with a value
        assert redaction.in_use() == [CANARY]
        _log_everywhere(CANARY)
        done = threading.Thread(target=log.warning, args=("from another thread: %s", CANARY))
        done.start()
        done.join()
    text = log_text.getvalue()
    assert CANARY not in text
    assert text.count(redaction.MASK) >= 6  # one per place the canary was
    assert "ValueError: upstream refused ***" in text
    assert "Traceback" in text
    assert redaction.in_use() == []


def test_nested_steps_keep_a_shared_value_until_the_last_one_ends(log_text: io.StringIO) -> None:
    """Two steps holding one value: it stays masked until both have ended."""
    with redaction.step([CANARY]):
        with redaction.step([CANARY]):
            pass
        log.warning("still in use: %s", CANARY)
    assert CANARY not in log_text.getvalue()
    assert redaction.in_use() == []


def test_outside_a_step_nothing_is_held() -> None:
    """A value resolved outside any step is not kept in the registry at all."""
    redaction.hold(CANARY)
    assert redaction.in_use() == []


class _LoggingServer:
    """A loopback server that logs the Authorization header it receives, with a traceback."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                owner.seen.append(auth)
                _log_everywhere(auth)  # code in this process, on another thread, logs it
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.mark.temporal
def test_a_running_step_masks_its_secret_in_every_log_line_of_the_process(
    settings: EngineSettings, log_text: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker step sends the canary; whatever logs it meanwhile shows the mask instead."""
    monkeypatch.setenv("AMOS_SECRET_API_TOKEN", CANARY)
    server = _LoggingServer()
    doc = {
        "dsl": "amos.flow/v1",
        "name": "redaction",
        "requires": {"secrets": ["api.token"]},
        "steps": [
            {
                "id": "call",
                "type": "action",
                "action": "http.request",
                "with": {
                    "url": f"{server.url}/private",
                    "headers": {"Authorization": "Bearer ${secrets.api.token}"},
                },
            }
        ],
    }

    async def go() -> dict[str, Any]:
        codec = payload_codec(settings.home, create=True)
        client = await connect(str(settings.temporal_address), codec=codec)
        return await run_flow(settings, doc, {}, client=client)

    try:
        result = asyncio.run(go())
    finally:
        server.stop()
    assert result["status"] == "completed", result
    assert server.seen == [f"Bearer {CANARY}"]
    text = log_text.getvalue()
    assert CANARY not in text
    assert "token in the message: Bearer ***" in text
    assert "ValueError: upstream refused Bearer ***" in text
    assert redaction.in_use() == []
