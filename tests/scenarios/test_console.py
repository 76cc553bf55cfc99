"""The Operator Console in a real browser: sign in, watch a run wait, approve it, see it end.

A real node (API, worker, Temporal, NATS) serves the built console; Playwright drives Debian's
Chromium. The run is started by the administrator and approved by another person (four
eyes) through the page. The page must log no console error and axe-core must find no
serious or critical accessibility violation on the pages the story visits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.console import DIST
from amosflow.engine.activities.browser import DEFAULT_CHROMIUM, chromium_args
from tests.api.conftest import Node, running_node
from tests.scenarios.examples import EXAMPLES_DIR, NEEDS_APPROVAL
from tests.support.httpserver import LoopbackServer

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOT = ROOT / "test-results" / "console-run.png"
FLOW = "invoice-approval"
APPROVER, PASSWORD = "carol", "carol-approves-invoices-7f3e"
COMMENT = "Checked against the purchase order."
DEADLINE_S = 60


def _until(what: str, check: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    end = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def node(settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats) -> Iterator[Node]:
    """A running API node that serves the built console."""
    assert (DIST / "index.html").is_file(), "the console is not built: run `make console`"
    assert AXE.is_file(), "axe-core is missing: run `make console`"
    with running_node(settings, tmp_path, nats_server) as running:
        yield running


def _approver(node: Node) -> None:
    """A person with the approver role who did not start the run."""
    created = node.client.post("/api/v1/users", json={"username": APPROVER, "password": PASSWORD})
    assert created.status_code == 201, created.text
    binding = {"subject_kind": "principal", "subject": created.json()["id"], "role": "approver"}
    bound = node.client.post("/api/v1/role-bindings", json=binding)
    assert bound.status_code == 201, bound.text


def _start_invoice(node: Node, api: str) -> str:
    """Save the example and start it (as the administrator) with an amount that needs approval."""
    document = json.loads((EXAMPLES_DIR / f"{FLOW}.json").read_text())
    saved = node.client.put(
        f"/api/v1/flows/{FLOW}", json={"document": document, "message": "console test"}
    )
    assert saved.status_code in {200, 201}, saved.text
    started = node.client.post(
        "/api/v1/runs", json={"flow": FLOW, "inputs": NEEDS_APPROVAL[FLOW](api)}
    )
    assert started.status_code == 201, started.text
    return str(started.json()["run_id"])


def _open_task(approver: httpx.Client, run_id: str) -> dict[str, Any] | None:
    listed = approver.get("/api/v1/tasks", params={"scope": "all", "status": "open"})
    assert listed.status_code == 200, listed.text
    return next((t for t in listed.json()["items"] if t["run_id"] == run_id), None)


def _axe(page: Page, where: str) -> None:
    """Run axe-core on the page; no serious or critical violation may remain."""
    # Evaluated through the driver, not as a <script>: the page's CSP refuses inline scripts.
    page.evaluate(AXE.read_text() + "\n;undefined")
    results = page.evaluate("async () => await axe.run(document)")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert bad == [], f"{where}: {bad}"


def _console_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


def _sign_in(page: Page, url: str) -> None:
    """Sign in through the form, finishing with the keyboard."""
    page.goto(f"{url}/")
    _axe(page, "sign-in")
    page.get_by_label("Username").fill(APPROVER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.get_by_role("navigation", name="Console").wait_for()


def _see_the_run_wait(page: Page, url: str, run_id: str, task: dict[str, Any]) -> None:
    """The run page: the diagram shows the human step waiting for a person."""
    page.goto(f"{url}/#/runs/{run_id}")
    waiting = page.locator(f'.react-flow__node[data-id="{task["step_id"]}"] .step')
    waiting.filter(has_text="waiting for a person").wait_for()
    assert waiting.get_attribute("data-status") in {"running", "waiting"}
    assert page.get_by_test_id("run-status").inner_text() == "running"
    _axe(page, "run waiting")


def _approve_in_the_inbox(page: Page, task: dict[str, Any]) -> None:
    """The inbox lists the task; open it, comment and approve."""
    page.get_by_role("link", name="Inbox").click()
    page.get_by_role("link", name=task["title"] or task["step_id"]).click()
    page.get_by_label("Comment").fill(COMMENT)
    _axe(page, "task")
    page.get_by_role("button", name="Approve").click()
    page.get_by_test_id("task-status").filter(has_text="decided").wait_for()
    assert COMMENT in page.get_by_test_id("decision").inner_text()


def _see_the_run_complete(page: Page, run_id: str, task: dict[str, Any]) -> None:
    """Back on the run page, the run completes (live, by SSE) and the step shows it."""
    page.get_by_role("link", name=run_id).click()
    page.get_by_test_id("run-status").filter(has_text="completed").wait_for()
    done = page.locator(f'.react-flow__node[data-id="{task["step_id"]}"] .step')
    assert done.get_attribute("data-status") == "completed"
    _axe(page, "run completed")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_sign_in_watch_the_run_wait_approve_it_and_see_it_complete(
    node: Node, http_server: LoopbackServer
) -> None:
    """The whole story through the page, with no console error and no serious a11y issue."""
    _approver(node)
    run_id = _start_invoice(node, http_server.url)
    login = httpx.post(
        f"{node.url}/api/v1/auth/login", json={"username": APPROVER, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    with httpx.Client(base_url=node.url, headers=headers, timeout=30) as approver:
        task = _until("the approval task", lambda: _open_task(approver, run_id))
    assert task["kind"] == "approval"

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=DEFAULT_CHROMIUM, headless=True, args=chromium_args()
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda message: _console_error(message, errors))
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.set_default_timeout(DEADLINE_S * 1000)
        try:
            _sign_in(page, node.url)
            _see_the_run_wait(page, node.url, run_id, task)
            _approve_in_the_inbox(page, task)
            _see_the_run_complete(page, run_id, task)
        except Exception:
            # What the page showed when the story broke, kept beside the success screenshot.
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT.with_name("console-failure.png")), full_page=True)
            raise
        finally:
            browser.close()

    assert errors == []
    run = node.client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "completed"
    decided = node.client.get(f"/api/v1/tasks/{task['id']}").json()
    assert decided["decision"]["outcome"] == "approved"
    assert decided["decision"]["comment"] == COMMENT
