"""Bug 5 of the battery: a checkpointer that keeps being killed still signs checkpoints.

Across the outside battery no checkpoint was signed at all: the checkpointer was SIGKILLed
now and then, and its 300 s timer started anew at every start. Here the real
``amos audit checkpointer`` is SIGKILLed on a seeded schedule, each life shorter than its
checkpoint interval; a checkpoint must still be signed, because the interval counts from
the last signed checkpoint (none yet: from the oldest unsigned record), not from the start.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from amosflow import audit
from amosflow.store import open_store
from tests.audit.chain import build
from tests.faults.harness import Faults, Process, wait_until
from tests.scenarios.test_runners import AMOS

SEED = 5
EVERY_S = 3.0
MAX_LIVES = 12


def test_a_checkpointer_killed_before_its_interval_runs_out_still_signs(tmp_path: Path) -> None:
    faults = Faults(seed=SEED)
    url = f"sqlite:///{tmp_path / 'amos.db'}"
    home = tmp_path / "home"
    settings = audit.AuditSettings(home=home, audit_dir=None, audit_sink=None)
    audit.CheckpointSigner.from_file(settings.key_path)  # the install's key
    store = open_store(url)
    try:
        build(store, 3)
    finally:
        store.dispose()
    sink = audit.JsonlSink(settings.sink_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")} | {
        "AMOS_DATABASE_URL": url,
        "AMOS_HOME": str(home),
        "AMOS_AUDIT_CHECKPOINT_RECORDS": "1000",
        "AMOS_AUDIT_CHECKPOINT_SECONDS": f"{EVERY_S:g}",
    }
    argv = [AMOS, "audit", "checkpointer", "--poll", "0.05"]
    signer = Process("audit-checkpointer", argv, env, tmp_path / "checkpointer.log", faults)
    pause = threading.Event()  # never set: the schedule's spacing between kills
    try:
        for life in range(1, MAX_LIVES + 1):
            signer.start()
            wait_until(
                lambda life=life: signer.output().count("audit checkpointer: every") >= life,
                timeout=60,
                what=f"checkpointer start {life}",
            )
            # Each life is shorter than the interval: a timer kept per process never fires.
            pause.wait(faults.dice.uniform(0.3, 0.6) * EVERY_S)
            if sink.read():
                break
            signer.kill()
        checkpoints = sink.read()
        assert [c.seq for c in checkpoints] == [3], (str(faults), signer.output())
        assert len(faults.injected) >= 1, "the checkpointer was never killed"
    finally:
        signer.stop()
