"""The payload codec: histories read as ciphertext without the vault's key, and only then."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from amosflow.config import EngineSettings
from amosflow.engine.client import connect
from amosflow.engine.codec import (
    ENCODING,
    KEY_ID,
    VaultPayloadCodec,
    data_converter,
    payload_codec,
)
from amosflow.engine.workflow import FlowWorkflow
from amosflow.errors import ConflictError, PayloadCodecError, VaultSealedError
from amosflow.store import Store
from amosflow.testing import run_flow
from amosflow.vault import KeyFileProvider, Vault
from amosflow.vault._codec_keys import codec_keys_path
from tests.engine.flows import echo, flow
from tests.engine.test_replay import recorded
from tests.store.conftest import store, store_url  # noqa: F401 - fixtures
from tests.support.history import history_text

IN_CANARY = "canary-input-3b7d-do-not-leak"
OUT_CANARY = "canary-output-91e0-do-not-leak"
ERR_CANARY = "canary-error-c44f-do-not-leak"
LOCAL_ACTIVITY_MARKER = {
    "seq", "attempt", "activity_id", "activity_type", "complete_time", "backoff",
    "original_schedule_time", "activation_index",
}  # fmt: skip


def _payloads(message: Message) -> list[Payload]:
    """Every Payload anywhere inside a protobuf message (fields, lists and maps)."""
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                found.append(item)
            elif isinstance(item, Message):
                found.extend(_payloads(item))
    return found


def history_payloads(history: WorkflowHistory) -> list[Payload]:
    """Every payload of every event of a history, as stored by the server."""
    return [p for event in history.events for p in _payloads(event)]


def key_ids(history: WorkflowHistory) -> set[str]:
    """The codec keys the encrypted payloads of ``history`` name."""
    return {p.metadata[KEY_ID].decode() for p in history_payloads(history) if KEY_ID in p.metadata}


async def decoded_text(codec: VaultPayloadCodec, history: WorkflowHistory) -> str:
    """Every payload of ``history`` decrypted with ``codec``, as one searchable text."""
    decoded = await codec.decode(history_payloads(history))
    return "\n".join(p.data.decode("utf-8", errors="replace") for p in decoded)


def _doc(server_url: str) -> dict[str, Any]:
    """Input canary in the flow, output canary from a step, error canary in a failure."""
    return flow(
        echo("first", {"in": IN_CANARY, "out": OUT_CANARY}),
        {
            "id": "boom",
            "type": "action",
            "action": "http.request",
            "with": {"url": f"{server_url}/status/500?why={ERR_CANARY}", "expect": [200]},
            "retry": {"max_attempts": 1},
        },
        name="codec",
    )


async def _run(client: Client, settings: EngineSettings, doc: dict[str, Any]) -> WorkflowHistory:
    run_id = f"codec-{uuid.uuid4().hex[:10]}"
    result = await run_flow(settings, doc, {}, run_id=run_id, client=client)
    assert result["status"] == "failed", result
    assert ERR_CANARY in result["error"]["message"]  # the codec client reads it back
    raw = await connect(str(settings.temporal_address))  # no codec: what a leak would show
    return await raw.get_workflow_handle(run_id).fetch_history()


@pytest.mark.temporal
def test_history_is_ciphertext_without_the_codec_and_plain_with_it(
    settings: EngineSettings, http_server
) -> None:
    """Inputs, outputs and failure messages are absent from the raw history; the codec reads them."""

    async def go() -> tuple[str, str, list[Payload]]:
        codec = payload_codec(settings.home, create=True)
        client = await connect(str(settings.temporal_address), codec=codec)
        history = await _run(client, settings, _doc(http_server.url))
        replayer = Replayer(
            workflows=[FlowWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
            data_converter=data_converter(codec),
        )
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None  # encrypted histories replay with the codec
        return history_text(history), await decoded_text(codec, history), history_payloads(history)

    raw, decoded, payloads = asyncio.run(go())
    for canary in (IN_CANARY, OUT_CANARY, ERR_CANARY):
        assert canary not in raw
        assert canary in decoded
    assert payloads
    plain = [json.loads(p.data) for p in payloads if p.metadata["encoding"] != ENCODING]
    # Only the SDK's own local-activity marker bookkeeping stays readable: no values.
    assert all(set(p) <= LOCAL_ACTIVITY_MARKER for p in plain), plain
    assert "Encoded failure" in raw  # failure messages moved into an encrypted payload


@pytest.mark.temporal
def test_a_flipped_byte_fails_with_a_clear_error(settings: EngineSettings, http_server) -> None:
    """One changed byte of an encrypted payload, or of its key id, fails authentication."""

    async def go() -> None:
        codec = payload_codec(settings.home, create=True)
        client = await connect(str(settings.temporal_address), codec=codec)
        payload = history_payloads(await _run(client, settings, _doc(http_server.url)))[0]
        await codec.decode([payload])  # intact, it opens
        flipped = Payload()
        flipped.CopyFrom(payload)
        data = bytearray(flipped.data)
        data[len(data) // 2] ^= 0x01
        flipped.data = bytes(data)
        with pytest.raises(PayloadCodecError, match="failed authentication") as caught:
            await codec.decode([flipped])
        assert payload.metadata[KEY_ID].decode() in str(caught.value)
        renamed = Payload()
        renamed.CopyFrom(payload)
        renamed.metadata[KEY_ID] = b"0000000000000000"
        with pytest.raises(PayloadCodecError, match="not in"):
            await codec.decode([renamed])

    asyncio.run(go())


@pytest.mark.temporal
def test_codec_key_rotation_keeps_older_runs_readable(
    settings: EngineSettings, http_server
) -> None:
    """After a rotation new runs use the new key; a fresh process still reads the old run."""

    async def go() -> None:
        codec = payload_codec(settings.home, create=True)
        client = await connect(str(settings.temporal_address), codec=codec)
        before = await _run(client, settings, _doc(http_server.url))
        ring = await codec.ring()
        old_key = ring.current()[0]
        new_key = ring.rotate()
        after = await _run(client, settings, _doc(http_server.url))
        assert key_ids(before) == {old_key}
        assert key_ids(after) == {new_key}
        fresh = payload_codec(settings.home)  # another process: loads the ring from the file
        for history in (before, after):
            assert OUT_CANARY in await decoded_text(fresh, history)

    asyncio.run(go())


def test_histories_written_without_the_codec_decode_unchanged_and_replay(tmp_path: Path) -> None:
    """Recorded plaintext histories pass through the codec and replay with it on."""
    codec = payload_codec(tmp_path / "home", create=True)
    replayer = Replayer(
        workflows=[FlowWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=data_converter(codec),
    )
    for path in recorded():
        history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
        payloads = history_payloads(history)
        assert asyncio.run(codec.decode(payloads)) == payloads
        result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
        assert result.replay_failure is None, (path.stem, result.replay_failure)


def test_a_sealed_codec_fails_closed_with_a_clear_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without key material encoding raises VaultSealedError; nothing is sent in plaintext."""
    caplog.set_level(logging.WARNING)
    home = tmp_path / "home"
    codec = payload_codec(home)  # a worker: never creates the key file
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    with pytest.raises(VaultSealedError, match="payload codec is sealed") as caught:
        asyncio.run(codec.encode([plain]))
    assert "does not exist" in str(caught.value)
    assert codec.sealed_reason() is not None
    assert asyncio.run(codec.decode([plain])) == [plain]  # not ours: no key needed
    assert "payload codec is sealed" in caplog.text
    assert not (home / "vault").exists()
    assert payload_codec(home, create=True).sealed_reason() is None  # the node creates it
    assert payload_codec(home).sealed_reason() is None  # now a worker opens it too


def test_kek_rotation_rewraps_codec_keys_and_guards_their_kek(
    store: Store,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """rotate_kek re-wraps codec keys too; their old KEK retires only after, and they still open."""
    home = tmp_path / "home"
    provider = KeyFileProvider(home / "vault" / "kek.json")
    codec = VaultPayloadCodec(home, create=True)
    sealed = asyncio.run(codec.encode([Payload(metadata={"encoding": b"x"}, data=b"value")]))
    vault = Vault(store, provider, codec_keys=codec_keys_path(home))
    assert vault.kek_usage() == {1: 1}
    provider.rotate()
    with pytest.raises(ConflictError, match="still wraps 1"):
        vault.retire_kek(1)
    vault.rotate_kek()
    vault.retire_kek(1)
    vault.retire_kek(2)
    assert vault.kek_usage() == {3: 1}
    fresh = VaultPayloadCodec(home, create=False)
    assert asyncio.run(fresh.decode(sealed))[0].data == b"value"
    assert b"value" not in sealed[0].data
