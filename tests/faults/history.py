"""Readers over what happened: Temporal histories, leases, the event stream, secret canaries.

Each reader reads one place where the node keeps its history, after a battery, and returns
the broken promises it found as sentences (the checker's ``Findings`` take them as they are);
an empty list means the promise held there. They read, never repair, and never print a
secret: a canary found is named by its place, not by its value.

- ``temporal_histories``: every started run's workflow ended or waits legitimately (on a
  human task or a timer); no activity for one idempotency key completed twice.
- ``leases``: no job had two holders. The store keeps only a job's current holder and fence
  (``runner_jobs``), and no lease grant is recorded over time, so the reader checks what is
  on record: every accepted completion (``runners.complete`` audit records, outcome ok) came
  from the job's current holder at its current fence, and at most one was accepted per job.
- ``durable_consumer``: a durable consumer of the event stream never gets one event twice
  under different ids (a repeat under the same id is what the consumer de-duplicates by),
  nor a run's start or end twice.
- ``secret_canaries``: a canary value never appears in logs, the store's tables (the vault's
  ciphertext rows aside), Temporal histories (payloads decoded), stream files or artifacts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy import MetaData, Table, inspect, select
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from amosflow.bus import DEFAULT_STREAM
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.store import AuditPendingRow, AuditRow, RunnerJobRow, RunRow, TaskRow, open_store

#: The vault's rows: AES-GCM ciphertext and wrapped keys, the one place a secret may be kept.
VAULT_TABLES = frozenset({"secret_versions"})
_ENDED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}
_OPEN_TASK = {"open"}
#: A run's events that happen once per run: its start, and its end whatever the outcome.
_RUN_PHASES = {
    "io.amosflow.run.started": "started",
    "io.amosflow.run.completed": "ended",
    "io.amosflow.run.failed": "ended",
}
#: A shorter canary could turn up by chance (in a hash, a ciphertext) and prove nothing.
MIN_CANARY = 8


# Temporal histories


def temporal_histories(
    address: str, home: Path, run_ids: Iterable[str], *, store_url: str
) -> list[str]:
    """Check each run's workflow history: ended or waiting legitimately, each key done once.

    ``home`` holds the node's payload codec key, so activity inputs can be decoded to find
    their idempotency keys. A run whose workflow Temporal does not know is fine only when
    the store failed it with a reason (a start Temporal refused).
    """
    run_ids = list(run_ids)
    histories = asyncio.run(_fetch_histories(address, run_ids))
    waiting_on_people, records = _store_view(store_url, run_ids)
    found: list[str] = []
    for run_id in run_ids:
        history = histories[run_id]
        if history is None:
            record = records.get(run_id)
            if record is None or record[0] != "failed" or not (record[1] or {}).get("message"):
                found.append(f"run {run_id} has no workflow in Temporal and was not failed")
            continue
        found.extend(_ended_or_waiting(run_id, history, run_id in waiting_on_people))
        completions = asyncio.run(activity_completions(history, home))
        for key, times in sorted(completions.items()):
            if times > 1:
                found.append(f"activity for idempotency key {key} completed {times} times")
    return found


async def _fetch_histories(address: str, run_ids: list[str]) -> dict[str, WorkflowHistory | None]:
    client = await connect(address)
    return {run_id: await _history(client, run_id) for run_id in run_ids}


async def _history(client: Client, run_id: str) -> WorkflowHistory | None:
    try:
        return await client.get_workflow_handle(run_id).fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _store_view(store_url: str, run_ids: list[str]) -> tuple[set[str], dict[str, Any]]:
    """The runs waiting on an open human task, and each run's (status, error) record."""
    store = open_store(store_url)
    try:
        with store.session(read_only=True) as session:
            tasks = session.query(TaskRow.run_id).filter(
                TaskRow.run_id.in_(run_ids), TaskRow.status.in_(_OPEN_TASK)
            )
            runs = session.query(RunRow.run_id, RunRow.status, RunRow.error).filter(
                RunRow.run_id.in_(run_ids)
            )
            return {row.run_id for row in tasks}, {r.run_id: (r.status, r.error) for r in runs}
    finally:
        store.dispose()


def _ended_or_waiting(run_id: str, history: WorkflowHistory, on_people: bool) -> list[str]:
    """A workflow that has not ended must wait on a timer or on a person, nothing else."""
    events = list(history.events)
    if events and events[-1].event_type in _ENDED:
        return []
    fired = {
        e.timer_fired_event_attributes.started_event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    } | {
        e.timer_canceled_event_attributes.started_event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED
    }
    timers = [
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and e.event_id not in fired
    ]
    if timers or on_people:
        return []
    last = EventType.Name(events[-1].event_type) if events else "no events"
    return [f"run {run_id} did not end and waits on no person or timer (last event {last})"]


async def activity_completions(history: WorkflowHistory, home: Path) -> Counter[str]:
    """How many scheduled activities of each idempotency key completed, in one history."""
    codec = payload_codec(home)
    key_of: dict[int, str] = {}
    completed: Counter[str] = Counter()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            payloads = event.activity_task_scheduled_event_attributes.input.payloads
            for value in await _decoded(codec, list(payloads)):
                key = next(_idempotency_keys(value), None)
                if key is not None:
                    key_of[event.event_id] = key
                    break
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled in key_of:
                completed[key_of[scheduled]] += 1
    return completed


def _idempotency_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        key = value.get("idempotency_key")
        if isinstance(key, str):
            yield key
        for inner in value.values():
            yield from _idempotency_keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _idempotency_keys(inner)


async def _decoded(codec: Any, payloads: list[Payload]) -> list[Any]:
    """Payloads through the node's codec, as JSON values (or text when not JSON)."""
    values: list[Any] = []
    for payload in await codec.decode(payloads):
        text = payload.data.decode("utf-8", errors="replace")
        try:
            values.append(json.loads(text))
        except ValueError:
            values.append(text)
    return values


async def history_text(history: WorkflowHistory, home: Path) -> str:
    """The history as JSON plus every payload in it decoded, so a search sees every value."""
    raw = json.loads(history.to_json())
    payloads: list[Payload] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                metadata = {k: base64.b64decode(v) for k, v in node["metadata"].items()}
                payloads.append(Payload(metadata=metadata, data=base64.b64decode(node["data"])))
            for inner in node.values():
                walk(inner)
        elif isinstance(node, list):
            for inner in node:
                walk(inner)

    walk(raw)
    decoded = await _decoded(payload_codec(home), payloads)
    return "\n".join([history.to_json(), *(json.dumps(v, ensure_ascii=False) for v in decoded)])


# Leases


def leases(store_url: str) -> list[str]:
    """Check that every accepted completion came from its job's one holder at its fence."""
    store = open_store(store_url)
    try:
        with store.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # One snapshot: the chainer moves records from audit_pending to audit_records
                # meanwhile, and two snapshots could see a record in neither table or both.
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                jobs = {
                    row.job_id: (row.runner_id, row.fence)
                    for row in connection.execute(
                        select(RunnerJobRow.job_id, RunnerJobRow.runner_id, RunnerJobRow.fence)
                    )
                }
                accepted: defaultdict[str, list[tuple[str, int]]] = defaultdict(list)
                for table in (AuditRow, AuditPendingRow):
                    query = select(table.details).where(
                        table.action == "runners.complete", table.outcome == "ok"
                    )
                    for (recorded,) in connection.execute(query):
                        details = recorded or {}
                        accepted[str(details.get("job_id"))].append(
                            (str(details.get("runner_id")), int(details.get("fence", -1)))
                        )
    finally:
        store.dispose()
    found: list[str] = []
    for job_id, reports in sorted(accepted.items()):
        holder = jobs.get(job_id)
        if len(reports) > 1:
            who = ", ".join(f"{runner} at fence {fence}" for runner, fence in reports)
            found.append(f"job {job_id} had two holders: completions accepted from {who}")
        for runner, fence in reports:
            if holder is not None and (runner, fence) != holder:
                found.append(
                    f"job {job_id} had two holders: a completion from {runner} at fence "
                    f"{fence} was accepted while {holder[0]} held it at fence {holder[1]}"
                )
    return found


# Durable consumers


def durable_consumer(
    nats_url: str, *, stream: str = DEFAULT_STREAM, subjects: str = "amos.>"
) -> list[str]:
    """Read ``stream`` as a durable consumer would and find events delivered under two ids.

    Two deliveries are one event when their type, subject and data are equal; the same event
    under different ids is a duplicate no consumer can recognise. A run starts once and ends
    once, so its start, and its end (completed or failed), each have one id whatever the data.
    """
    deliveries = stream_events(nats_url, stream=stream, subjects=subjects)
    ids_of: defaultdict[tuple[str, str, str], list[str]] = defaultdict(list)
    phases: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    found: list[str] = []
    for msg_id, event in deliveries:
        type_, subject = str(event.get("type")), str(event.get("subject"))
        if not msg_id:
            found.append(f"an event on {stream} has no id ({type_})")
            continue
        what = (type_, subject, json.dumps(event.get("data"), sort_keys=True))
        if msg_id not in ids_of[what]:
            ids_of[what].append(msg_id)
        phase = _RUN_PHASES.get(type_)
        if phase is not None and msg_id not in phases[phase, subject]:
            phases[phase, subject].append(msg_id)
    for (type_, subject, _), ids in sorted(ids_of.items()):
        if len(ids) > 1:
            found.append(
                f"event {type_} about {subject} delivered {len(ids)} times under different "
                f"ids {', '.join(ids)}"
            )
    for (phase, subject), ids in sorted(phases.items()):
        if len(ids) > 1:
            found.append(f"run {subject} {phase} {len(ids)} times, under ids {', '.join(ids)}")
    return found


def stream_events(
    nats_url: str, *, stream: str = DEFAULT_STREAM, subjects: str = "amos.>"
) -> list[tuple[str, dict[str, Any]]]:
    """Every (id, event) of ``stream`` on ``subjects``, in stream order, repeats included."""
    return asyncio.run(_consume(nats_url, stream, subjects))


async def _consume(nats_url: str, stream: str, subjects: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message of ``stream`` on ``subjects``, through a durable pull consumer of its own."""
    client = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    durable = f"history-{uuid.uuid4().hex[:12]}"
    jetstream = client.jetstream()
    deliveries: list[tuple[str, dict[str, Any]]] = []
    try:
        subscription = await jetstream.pull_subscribe(subjects, durable=durable, stream=stream)
        while True:
            try:
                batch = await subscription.fetch(256, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                break  # the stream has nothing more for this consumer
            for message in batch:
                event = json.loads(message.data)
                msg_id = (message.headers or {}).get("Nats-Msg-Id") or event.get("id") or ""
                deliveries.append((str(msg_id), event))
                await message.ack()
        await jetstream.delete_consumer(stream, durable)
    finally:
        await client.close()
    return deliveries


# Secret canaries


def secret_canaries(
    canaries: Sequence[str],
    *,
    store_url: str | None = None,
    paths: Iterable[Path] = (),
    temporal: tuple[str, Path, Iterable[str]] | None = None,
) -> list[str]:
    """Find where a canary appears: files under ``paths``, the store, Temporal histories.

    ``paths`` are files or directories (the node's logs, the stream's files, the artifacts);
    ``temporal`` is (address, home, run ids). Canaries are named by their position only.
    """
    if not canaries or any(len(c) < MIN_CANARY for c in canaries):
        raise ValueError(f"canaries must be values of at least {MIN_CANARY} characters")
    found: list[str] = []
    for path in _files(paths):
        data = path.read_bytes()
        found.extend(
            f"secret canary #{i} appears in file {path}"
            for i, canary in enumerate(canaries)
            if canary.encode() in data
        )
    if store_url is not None:
        found.extend(_canaries_in_store(canaries, store_url))
    if temporal is not None:
        address, home, run_ids = temporal
        texts = asyncio.run(_history_texts(address, home, list(run_ids)))
        for run_id, text in texts.items():
            found.extend(
                f"secret canary #{i} appears in the Temporal history of run {run_id}"
                for i, canary in enumerate(canaries)
                if canary in text
            )
    return found


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            yield path


def _canaries_in_store(canaries: Sequence[str], store_url: str) -> list[str]:
    """Every table the database has (reflected, so a new table is read too) but the vault's."""
    store = open_store(store_url)
    found: list[str] = []
    try:
        names = sorted(set(inspect(store.engine).get_table_names()) - VAULT_TABLES)
        metadata = MetaData()
        with store.engine.connect() as connection:
            for name in names:
                table = Table(name, metadata, autoload_with=connection)
                hits: set[int] = set()
                for row in connection.execute(select(table)):
                    text = "\n".join(_as_text(value) for value in row)
                    hits.update(i for i, canary in enumerate(canaries) if canary in text)
                found.extend(
                    f"secret canary #{i} appears in store table {name}" for i in sorted(hits)
                )
    finally:
        store.dispose()
    return found


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


async def _history_texts(address: str, home: Path, run_ids: list[str]) -> dict[str, str]:
    client = await connect(address)
    texts: dict[str, str] = {}
    for run_id in run_ids:
        history = await _history(client, run_id)
        if history is not None:
            texts[run_id] = await history_text(history, home)
    return texts
