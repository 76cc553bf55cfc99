"""A mixed workload driven through the public API, as users and their scripts would.

Every side effect is a POST to the counting target (``SideEffects``), which records each
idempotency key it performs. The flows mix what the DSL offers: HTTP steps in the worker,
steps on the node's own runner and on a remote one, a durable wait, a foreach fan-out, a
child flow, a human approval answered by a bot, runs started from the API, a signed webhook
and a schedule. Each run's side effects follow from its flow and its run id alone
(``expected_keys``), so the checker can tell that a completed run did each exactly once.

The driver and the bot keep going through faults: a request that fails or times out is not
retried blindly (a second POST would be a second run); the runs are read back at the end from
the API's index, which holds every run the node recorded, whoever started it.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from amosflow.triggers import sign
from tests.faults.checker import TERMINAL, Findings, check_history, check_node_stores
from tests.faults.harness import wait_until
from tests.faults.node import Node, inject
from tests.scenarios.test_runners import SideEffects

#: A secret value that must never appear in the node's files, logs or histories.
CANARY = "canary-battery-secret-93be2c"
HOOK = "battery-hook"
TICK = "battery-tick"
FAN = 3
RETRY = {"max_attempts": 20, "backoff": "1s", "max_backoff": "5s"}


def _post(
    step_id: str, url: str, headers: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    request = {"method": "POST", "url": url, "json": {}, "expect": [200]}
    return {
        "id": step_id,
        "type": "action",
        "action": "http.request",
        "with": request | ({"headers": headers} if headers else {}),
        "timeout": "20s",
        **extra,
    }


def flows(url: str) -> list[dict[str, Any]]:
    """The workload's flows, each with side effects a checker can name from a run id."""
    leaf = {
        "dsl": "amos.flow/v1",
        "name": "mix-leaf",
        "defaults": {"retry": RETRY},
        "steps": [_post("leaf", url)],
    }
    main = {
        "dsl": "amos.flow/v1",
        "name": "mix-main",
        "requires": {"secrets": ["battery.canary"]},
        "defaults": {"retry": RETRY},
        "steps": [
            # The canary travels as a reference and is resolved where the action runs.
            _post("a", url, headers={"x-canary": "${secrets.battery.canary}"}),
            {"id": "pause", "type": "wait", "duration": "1s"},
            {
                "id": "fan",
                "type": "foreach",
                "items": list(range(FAN)),
                "concurrency": 2,
                "steps": [_post("each", url)],
            },
            _post("local", url, timeout="120s", runner={"zone": "local"}),
            _post("remote", url, timeout="120s", runner={"zone": "remote"}),
            {"id": "sub", "type": "call", "flow": "mix-leaf", "inputs": {}},
        ],
    }
    human = {
        "dsl": "amos.flow/v1",
        "name": "mix-human",
        "defaults": {"retry": RETRY},
        "steps": [
            _post("before", url),
            {"id": "approve", "type": "human", "task": "approval", "title": "battery"},
            _post("after", url, when="${steps.approve.output.outcome == 'approved'}"),
        ],
    }
    return [leaf, main, human]


def expected_keys(run: Mapping[str, Any]) -> set[str]:
    """The idempotency keys a completed run of the workload performed, from its flow and id."""
    rid = run["run_id"]
    if run["flow"] == "mix-leaf":
        return {f"{rid}/leaf/0"}
    if run["flow"] == "mix-main":
        fan = {f"{rid}/each/{i}" for i in range(FAN)}
        return {f"{rid}/a/0", f"{rid}/local/0", f"{rid}/remote/0", f"{rid}/sub/0/leaf/0", *fan}
    if run["flow"] == "mix-human":
        return {f"{rid}/before/0", f"{rid}/after/0"}
    msg = f"run {rid} of a flow the workload does not know: {run['flow']!r}"
    raise AssertionError(msg)


@dataclass
class Workload:
    """Starts runs through the API, a webhook and a schedule; a bot approves human tasks."""

    node: Node
    target_url: str
    dice: random.Random
    #: What the driver did, by kind (a request lost to a fault counts as ``lost-request``).
    tally: Counter[str] = field(default_factory=Counter)
    #: Runs the node said it accepted (201, or 202 to a webhook): each must start.
    acknowledged: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _driving: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def install(self, *, schedule: str = "@every 4s") -> None:
        """Save the flows, the canary secret, the webhook and the schedule."""
        with self.node.client(timeout=30) as client:
            secret = client.put("/api/v1/secrets/battery.canary", json={"value": CANARY})
            assert secret.status_code in {200, 201}, secret.text
            for doc in flows(self.target_url):
                saved = client.put(f"/api/v1/flows/{doc['name']}", json={"document": doc})
                assert saved.status_code == httpx.codes.OK, saved.text
            hook = {"name": HOOK, "type": "webhook", "flow": "mix-leaf", "secret": "battery.canary"}
            saved = client.put(f"/api/v1/triggers/{HOOK}", json={"document": hook})
            assert saved.status_code == httpx.codes.OK, saved.text
            tick = {"name": TICK, "type": "schedule", "flow": "mix-leaf", "cron": schedule}
            saved = client.put(f"/api/v1/triggers/{TICK}", json={"document": tick})
            assert saved.status_code == httpx.codes.OK, saved.text

    def start(self, *, runs: int, every: float) -> None:
        """Start the driver (``runs`` starts, one per ``every`` seconds) and the approving bot."""
        for target, args in ((self._drive, (runs, every)), (self._bot, ())):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop_driving(self) -> None:
        """Start no more runs."""
        self._driving.set()
        self._threads[0].join(timeout=60)

    def finish(self) -> None:
        """Remove the schedule (retried until the API takes it).

        The bot keeps approving until ``close``: human runs started last still end.
        """
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError), self.node.client() as client:
                gone = client.delete(f"/api/v1/triggers/{TICK}")
                if gone.status_code in {200, 204, 404}:
                    return
            self._stop.wait(1)
        msg = "the schedule could not be removed within 120 s"
        raise AssertionError(msg)

    def close(self) -> None:
        """Stop the bot."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _drive(self, runs: int, every: float) -> None:
        starts: list[Callable[[httpx.Client], str]] = [
            self._start_run("mix-main"),
            self._start_run("mix-main"),
            self._start_run("mix-human"),
            self._start_run("mix-leaf"),
            self._webhook,
        ]
        with self.node.client() as client:
            for _ in range(runs):
                if self._driving.is_set():
                    return
                start = self.dice.choice(starts)
                try:
                    self.tally[start(client)] += 1
                except httpx.HTTPError:
                    self.tally["lost-request"] += 1
                self._driving.wait(every)

    def _start_run(self, flow: str) -> Callable[[httpx.Client], str]:
        def start(client: httpx.Client) -> str:
            started = client.post("/api/v1/runs", json={"flow": flow, "inputs": {}})
            if started.status_code == httpx.codes.CREATED:
                self.acknowledged.add(started.json()["run_id"])
            return f"start {flow} {started.status_code}"

        return start

    def _webhook(self, client: httpx.Client) -> str:
        body = json.dumps({"from": "battery"}).encode()
        stamp, delivery = str(int(time.time())), f"d{self.dice.getrandbits(48):x}"
        headers = {
            "content-type": "application/json",
            "X-Amos-Timestamp": stamp,
            "X-Amos-Delivery": delivery,
            "X-Amos-Signature": sign(CANARY.encode(), stamp, delivery, body),
        }
        delivered = client.post(f"/api/v1/hooks/{HOOK}", content=body, headers=headers)
        if delivered.status_code == httpx.codes.ACCEPTED:
            self.acknowledged.add(delivered.json()["run_id"])
        return f"webhook {delivered.status_code}"

    def _bot(self) -> None:
        """Approve every open task, as an approver working through the inbox would."""
        with self.node.client(approver=True) as client:
            while not self._stop.wait(0.5):
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    page = client.get("/api/v1/tasks", params={"scope": "all", "limit": 200})
                    for task in page.json()["items"] if page.status_code == httpx.codes.OK else []:
                        decided = client.post(
                            f"/api/v1/tasks/{task['id']}/decide", json={"outcome": "approved"}
                        )
                        self.tally[f"task decided {decided.status_code}"] += 1


def all_runs(node: Node) -> list[dict[str, Any]]:
    """Every run in the node's index, following the pages."""
    runs: list[dict[str, Any]] = []
    cursor: str | None = None
    with node.client(timeout=30) as client:
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = client.get("/api/v1/runs", params=params)
            assert page.status_code == httpx.codes.OK, page.text
            body = page.json()
            runs += body["items"]
            cursor = body.get("next_cursor")
            if not cursor:
                return runs


def waiting_on_humans(node: Node) -> set[str]:
    """The runs with an open human task: waiting on a person is a legitimate place to be."""
    with node.client(timeout=30) as client:
        page = client.get("/api/v1/tasks", params={"scope": "all", "limit": 200})
        assert page.status_code == httpx.codes.OK, page.text
        return {t["run_id"] for t in page.json()["items"]}


@dataclass
class Outcome:
    """What one battery did and what the checker found."""

    seed: int
    faults: Counter[str]
    runs: Counter[str]
    performed: int
    requests: int
    findings: Findings
    tally: Counter[str]
    failed: list[str]
    #: Runs failed as never started whose caller got no 201 (decision 0064's promise kept).
    unstarted: int
    seconds: float

    def report(self) -> str:
        """The battery's report: faults by kind, runs by end state, side effects, findings."""
        lines = [f"seed {self.seed}, {sum(self.faults.values())} faults in {self.seconds:.0f} s"]
        lines += [f"  fault {kind}: {n}" for kind, n in sorted(self.faults.items())]
        lines += [f"  runs {state}: {n}" for state, n in sorted(self.runs.items())]
        lines.append(f"  side effects performed: {self.performed} (requests {self.requests})")
        lines += [f"  driver {what}: {n}" for what, n in sorted(self.tally.items())]
        lines.append(f"  runs failed unstarted, their start request lost: {self.unstarted}")
        lines += [f"  failed run: {why}" for why in self.failed]
        lines.append(f"  checker: {self.findings}")
        return "\n".join(lines)


def _unacknowledged(run: Mapping[str, Any], workload: Workload) -> bool:
    """A run the node recorded but never started, failed with that reason, and never promised.

    The API died between recording the run and starting it, so its caller got no 201 (the
    request was lost); the node failed it with the reason on its own (decision 0064). That
    is the promise kept, not a run lost. A run the caller was told was created must start.
    """
    error = run.get("error") or {}
    return error.get("type") == "RunNotStarted" and run["run_id"] not in workload.acknowledged


def run_battery(
    node: Node,
    target: SideEffects,
    *,
    seed: int,
    faults: int,
    minutes: float | None = None,
    every: float = 2.0,
    tick: Callable[[], None] | None = None,
) -> Outcome:
    """Drive the workload while ``faults`` faults drawn from ``seed`` hit the node; check it.

    Stops injecting after ``faults`` faults or ``minutes``, whichever comes first; ``tick``
    is called between faults (the soak's sampler). Then every fault is healed, the node must
    come back whole, every run must end (or wait on a person), and the checker reads it all.
    """
    began = time.monotonic()
    dice = random.Random(seed)  # noqa: S311 - a schedule, not a secret
    node.faults.seed = seed
    workload = Workload(node, target.url, random.Random(seed + 1))  # noqa: S311
    workload.install()
    workload.start(runs=1_000_000, every=every)
    hold = threading.Event()  # never set: the clock faults and spacing run on
    kinds: Counter[str] = Counter()
    deadline = began + (minutes * 60 if minutes else float("inf"))
    try:
        while sum(kinds.values()) < faults and time.monotonic() < deadline:
            kinds[inject(node, dice, hold)] += 1
            hold.wait(dice.uniform(0.3, 1.5))
            if tick is not None:
                tick()
    finally:
        node.resume_all()
        workload.stop_driving()
    wait_until(node.healthy, timeout=240, what=f"the node whole again ({node.faults})")
    workload.finish()

    def settled() -> list[dict[str, Any]] | None:
        try:
            runs, waiting = all_runs(node), waiting_on_humans(node)
        except (httpx.HTTPError, AssertionError):
            return None
        return (
            runs if all(r["status"] in TERMINAL or r["run_id"] in waiting for r in runs) else None
        )

    try:
        runs = wait_until(settled, timeout=300, what=f"every run ended ({node.faults})")
    finally:
        workload.close()
    runs, waiting = all_runs(node), waiting_on_humans(node)
    with target.lock:
        performed, requested = Counter(target.done), list(target.requests)
    places = [node.home, node.log] + ([node.remote.log] if node.remote else [])
    findings = check_history(
        runs,
        performed,
        requested,
        expected_keys,
        node.store_url,
        waiting=waiting,
        home=node.home,
    )
    check_node_stores(
        findings,
        node.announced("Temporal"),
        node.announced("NATS"),
        node.home,
        [r["run_id"] for r in runs],
        node.store_url,
        CANARY,
        places,
    )
    failed = [
        f"{r['run_id']} ({r['flow']}): {(r.get('error') or {}).get('message')}"
        for r in runs
        if r["status"] != "completed"
        and r["status"] in TERMINAL
        and not _unacknowledged(r, workload)
    ]
    return Outcome(
        seed=seed,
        faults=kinds,
        runs=Counter("waiting" if r["run_id"] in waiting else r["status"] for r in runs),
        performed=sum(performed.values()),
        requests=len(requested),
        findings=findings,
        tally=workload.tally,
        failed=failed,
        unstarted=sum(_unacknowledged(r, workload) for r in runs),
        seconds=time.monotonic() - began,
    )
