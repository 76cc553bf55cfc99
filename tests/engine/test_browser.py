"""browser.run drives Debian's Chromium against a real site on loopback, through the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.dsl import validate_flow
from amosflow.engine.activities import ArtifactStore, is_ref
from amosflow.engine.activities.browser import checked_url, chromium_args, table_rows
from amosflow.engine.client import connect
from amosflow.errors import ActionError
from amosflow.testing import run_flow
from tests.engine.flows import flow
from tests.support.browsersite import REPORT, BrowserSite
from tests.support.history import history_text

CANARY = "form-token-5d1e8b2a-do-not-leak"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def site() -> Iterator[BrowserSite]:
    """The test site on 127.0.0.1, expecting the canary as the form's token."""
    server = BrowserSite(token=CANARY).start()
    try:
        yield server
    finally:
        server.stop()


def browser(step_id: str, *commands: dict[str, Any], **with_: Any) -> dict[str, Any]:
    """A browser.run step that is not retried, so failures show at once."""
    return {
        "id": step_id,
        "type": "action",
        "action": "browser.run",
        "with": {"commands": list(commands), "timeout": "10s", **with_},
        "retry": {"max_attempts": 1},
    }


def _run(settings: EngineSettings, doc: dict[str, Any], run_id: str) -> tuple[dict[str, Any], str]:
    async def go() -> tuple[dict[str, Any], str]:
        client = await connect(str(settings.temporal_address))
        result = await run_flow(settings, doc, {}, run_id=run_id, client=client)
        history = await client.get_workflow_handle(run_id).fetch_history()
        return result, history_text(history)

    return asyncio.run(go())


@pytest.mark.temporal
def test_form_is_filled_submitted_and_its_table_extracted(
    settings: EngineSettings, site: BrowserSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow fills the form (token from a secret), submits it and reads back the table."""
    monkeypatch.setenv("AMOS_SECRET_FORM_TOKEN", CANARY)
    step = browser(
        "order",
        {"do": "goto", "url": f"{site.url}/form"},
        {"do": "fill", "selector": "#customer", "value": "ACME ${inputs.suffix}"},
        {"do": "select", "selector": "#plan", "value": "Pro"},
        {"do": "fill", "selector": "#seats", "value": "3"},
        {"do": "fill", "selector": "#token", "value": "${secrets.form_token}"},
        {"do": "extract", "name": "typed", "selector": "#token", "kind": "attribute",
         "attribute": "type"},
        {"do": "click", "selector": "#submit"},
        {"do": "wait_for", "selector": "#quote td", "state": "visible", "timeout": "5s"},
        {"do": "extract", "name": "rows", "selector": "#quote", "kind": "table"},
        {"do": "extract", "name": "title", "selector": "h1"},
        {"do": "extract", "name": "cells", "selector": "#quote tbody td:first-child",
         "kind": "all_text"},
        {"do": "screenshot", "name": "quote", "full_page": True},
        viewport={"width": 800, "height": 600},
    )  # fmt: skip
    doc = flow(
        step,
        inputs={"type": "object", "properties": {"suffix": {"type": "string"}}},
        requires={"secrets": ["form_token"]},
        outputs={"browser": "${steps.order.output}"},
    )
    assert validate_flow(doc) == []

    async def go() -> tuple[dict[str, Any], str]:
        client = await connect(str(settings.temporal_address))
        result = await run_flow(
            settings, doc, {"suffix": "Ltd"}, run_id="browser-form-1", client=client
        )
        history = await client.get_workflow_handle("browser-form-1").fetch_history()
        return result, history_text(history)

    result, history = asyncio.run(go())

    assert result["status"] == "completed", result["error"]
    output = result["output"]["browser"]
    assert len(site.rendered) == 1
    assert output["extracted"]["rows"] == site.rendered[0]
    assert site.rendered[0] == [
        {"Item": "Pro plan for ACME Ltd", "Seats": "3", "Total": "75.00"},
        {"Item": "Token", "Seats": "", "Total": "accepted"},
    ]
    assert output["extracted"]["title"] == "Quote"
    assert output["extracted"]["typed"] == "password"
    assert output["extracted"]["cells"] == ["Pro plan for ACME Ltd", "Token"]
    assert output["url"] == f"{site.url}/result"
    assert output["downloads"] == {}
    shot = output["screenshots"]["quote"]
    assert is_ref(shot)
    assert ArtifactStore(settings.artifacts_dir).get(shot).startswith(PNG_SIGNATURE)
    assert CANARY not in history
    assert CANARY not in str(result)


@pytest.mark.temporal
def test_missing_selector_fails_naming_the_command(
    settings: EngineSettings, site: BrowserSite
) -> None:
    """A selector that never appears fails the step with the command's index, kind and timeout."""
    step = browser(
        "order",
        {"do": "goto", "url": f"{site.url}/form"},
        {"do": "click", "selector": "#nope"},
        timeout="1s",
    )
    result, _ = _run(settings, flow(step), "browser-missing-1")
    assert result["status"] == "failed"
    assert result["error"]["type"] == "BrowserTimeout"
    assert result["error"]["step"] == "order"
    assert "/commands/1: click #nope timed out after 1s" in result["error"]["message"]


@pytest.mark.temporal
def test_failure_messages_mask_the_filled_secret(
    settings: EngineSettings, site: BrowserSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing command whose text holds the secret shows *** in the error, and no history leak."""
    monkeypatch.setenv("AMOS_SECRET_FORM_TOKEN", CANARY)
    step = browser(
        "order",
        {"do": "goto", "url": f"{site.url}/form"},
        {"do": "fill", "selector": "#token", "value": "${secrets.form_token}"},
        {"do": "wait_for", "selector": "#x-${secrets.form_token}", "timeout": "300ms"},
    )
    doc = flow(step, requires={"secrets": ["form_token"]})
    result, history = _run(settings, doc, "browser-secret-fail-1")
    assert result["status"] == "failed"
    assert "/commands/2: wait_for #x-*** timed out after 300ms" in result["error"]["message"]
    assert CANARY not in history
    assert CANARY not in str(result)


@pytest.mark.temporal
def test_consecutive_jobs_share_no_cookies_or_storage(
    settings: EngineSettings, site: BrowserSite
) -> None:
    """A cookie and local storage set in one job are gone in the next, on the same browser."""
    first = browser(
        "first",
        {"do": "goto", "url": f"{site.url}/set-cookie"},
        {"do": "goto", "url": f"{site.url}/state"},
        {"do": "extract", "name": "cookies", "selector": "#cookies"},
        {"do": "extract", "name": "storage", "selector": "#storage"},
    )
    second = browser(
        "second",
        {"do": "goto", "url": f"{site.url}/state"},
        {"do": "extract", "name": "cookies", "selector": "#cookies"},
        {"do": "extract", "name": "storage", "selector": "#storage"},
    )
    doc = flow(
        first,
        second,
        outputs={
            "first": "${steps.first.output.extracted}",
            "second": "${steps.second.output.extracted}",
        },
    )
    result, _ = _run(settings, doc, "browser-isolation-1")
    assert result["status"] == "completed", result["error"]
    assert result["output"]["first"] == {"cookies": "job=one", "storage": "yes"}
    assert result["output"]["second"] == {"cookies": "", "storage": "none"}
    assert site.cookies_seen[-1] == ""


@pytest.mark.temporal
def test_download_is_stored_as_an_artifact(settings: EngineSettings, site: BrowserSite) -> None:
    """A click that starts a download stores the file and returns its reference by name."""
    step = browser(
        "fetch",
        {"do": "goto", "url": f"{site.url}/downloads"},
        {"do": "click", "selector": "#report", "download": True},
    )
    result, _ = _run(settings, flow(step, outputs={"out": "${steps.fetch.output}"}), "browser-dl-1")
    assert result["status"] == "completed", result["error"]
    ref = result["output"]["out"]["downloads"]["report.csv"]
    assert ArtifactStore(settings.artifacts_dir).get(ref) == REPORT


@pytest.mark.temporal
def test_goto_refuses_a_non_http_url(settings: EngineSettings) -> None:
    """Only http and https pages may be opened; the refusal is not retried."""
    step = browser("peek", {"do": "goto", "url": "file:///etc/passwd"})
    step["retry"] = {"max_attempts": 3, "backoff": "50ms"}
    result, _ = _run(settings, flow(step), "browser-file-1")
    assert result["status"] == "failed"
    assert result["error"]["type"] == "BrowserUrlRefused"
    assert "/commands/0: goto file:///etc/passwd failed" in result["error"]["message"]


def test_commands_are_validated_at_their_own_pointers() -> None:
    """Problems in commands are reported at the command's keys, not at a union label."""
    doc = flow(
        browser(
            "b",
            {"do": "click"},
            {"do": "teleport"},
            {"do": "fill", "selector": "#a", "value": "x", "delay": 1},
            {"do": "extract", "name": "x", "selector": "#a", "kind": "attribute"},
            {"do": "wait_for", "selector": "#a", "state": "gone"},
        )
    )
    found = {d.pointer: d.message for d in validate_flow(doc)}
    assert found == {
        "/steps/0/with/commands/0": "missing required key 'selector'",
        "/steps/0/with/commands/1": (
            "unknown command 'teleport' in 'do'; expected one of: goto, click, fill, select,"
            " wait_for, extract, screenshot"
        ),
        "/steps/0/with/commands/2": (
            "unknown key 'delay' in a fill command; expected one of: do, selector, value"
        ),
        "/steps/0/with/commands/3": "'attribute' is required with kind 'attribute' and only with it",
        "/steps/0/with/commands/4/state": "expected 'visible', 'attached' or 'hidden'",
    }


def test_names_are_unique_per_kind() -> None:
    """Two extracts cannot write the same name."""
    doc = flow(
        browser(
            "b",
            {"do": "extract", "name": "x", "selector": "#a"},
            {"do": "screenshot", "name": "x"},
            {"do": "extract", "name": "x", "selector": "#b"},
        )
    )
    assert [d.message for d in validate_flow(doc)] == [
        "duplicate extract name 'x' at /commands/2, first at /commands/0"
    ]


def test_table_rows_are_keyed_by_unique_headers() -> None:
    """Blank and repeated headers, and rows wider than the header, still get distinct keys."""
    rows = table_rows(["A", "", "A"], [["1", "2", "3", "4"], ["5"]])
    assert rows == [{"A": "1", "column_2": "2", "A_3": "3", "column_4": "4"}, {"A": "5"}]


def test_only_http_urls_are_admitted() -> None:
    """checked_url is the one gate for where the browser may go."""
    assert checked_url("https://example.test/x") == "https://example.test/x"
    for url in ("file:///etc/passwd", "javascript:alert(1)", "chrome://settings", "data:,x"):
        with pytest.raises(ActionError):
            checked_url(url)


def test_no_sandbox_only_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-sandbox is added for root only; the quiet-network flags always."""
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "--no-sandbox" not in chromium_args()
    assert "--disable-background-networking" in chromium_args()
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert chromium_args()[0] == "--no-sandbox"


@pytest.mark.temporal
@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://0xa9fea9fe/", "http://[::1]:9/"]
)
def test_goto_refuses_what_the_egress_policy_does_not_open(
    settings: EngineSettings, url: str
) -> None:
    """Metadata (plain and in hex) and IPv6 loopback: EgressDenied, not retried."""
    run_id = f"browser-ssrf-{abs(hash(url)) % 10_000}"
    result, _ = _run(settings, flow(browser("peek", {"do": "goto", "url": url})), run_id)
    assert result["status"] == "failed"
    assert result["error"]["type"] == "EgressDenied", result["error"]


@pytest.mark.temporal
def test_a_redirect_to_an_internal_address_is_blocked(
    settings: EngineSettings, site: BrowserSite
) -> None:
    """An allowed page that redirects to the metadata address: the hop is aborted in the browser."""
    step = browser("hop", {"do": "goto", "url": f"{site.url}/to-metadata"})
    result, _ = _run(settings, flow(step), "browser-redirect-1")
    assert result["status"] == "failed"
    assert "ERR_BLOCKED_BY_CLIENT" in result["error"]["message"]
