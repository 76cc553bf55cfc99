"""browser.run reaches the network only where the run's egress policy opens, and as checked.

Regression tests for issue 13, finding 9: WebSockets (from a page or a worker) bypassed the
policy, and the host was resolved again between the check and the connection (rebinding).
Every test drives Debian's Chromium through a real flow run against real loopback servers.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from amosflow.config import EngineSettings
from amosflow.engine.activities import browser as browser_action
from amosflow.engine.client import connect
from amosflow.testing import run_flow
from tests.engine.flows import flow
from tests.support.wssite import UdpSink, WebSocketSite


@pytest.fixture
def site() -> Iterator[WebSocketSite]:
    """The page server on 127.0.0.1, the only destination the tests' policy opens."""
    server = WebSocketSite(title="site").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def target() -> Iterator[WebSocketSite]:
    """A WebSocket echo server on another loopback port that the policy does not open."""
    server = WebSocketSite(title="target").start()
    try:
        yield server
    finally:
        server.stop()


def open_only(monkeypatch: pytest.MonkeyPatch, *entries: str) -> None:
    """Replace the fixtures' `AMOS_EGRESS_ALLOW=127.0.0.1` with exactly these entries."""
    monkeypatch.setenv("AMOS_EGRESS_ALLOW", ",".join(entries))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def browse(settings: EngineSettings, run_id: str, *commands: dict[str, Any]) -> dict[str, Any]:
    """Run one unretried browser.run step and return the run's result."""
    step = {
        "id": "b",
        "type": "action",
        "action": "browser.run",
        "with": {"commands": list(commands), "timeout": "15s"},
        "retry": {"max_attempts": 1},
    }
    doc = flow(step, outputs={"out": "${steps.b.output.extracted}"})

    async def go() -> dict[str, Any]:
        client = await connect(str(settings.temporal_address))
        return await run_flow(settings, doc, {}, run_id=run_id, client=client)

    return asyncio.run(go())


def websocket_outcome(settings: EngineSettings, run_id: str, page: str) -> str:
    """Open ``page`` and return what its WebSocket reported: echo:ping, error or closed:<code>."""
    result = browse(
        settings,
        run_id,
        {"do": "goto", "url": page},
        {"do": "wait_for", "selector": "#ws[data-done]", "state": "attached"},
        {"do": "extract", "name": "ws", "selector": "#ws"},
    )
    assert result["status"] == "completed", result["error"]
    return str(result["output"]["out"]["ws"])


@pytest.mark.temporal
@pytest.mark.parametrize("in_worker", [False, True], ids=["page", "worker"])
def test_websocket_to_a_closed_loopback_port_never_connects(
    settings: EngineSettings,
    site: WebSocketSite,
    target: WebSocketSite,
    monkeypatch: pytest.MonkeyPatch,
    in_worker: bool,
) -> None:
    """A page (or its worker) opening a WebSocket the policy does not open: the server never sees it."""
    open_only(monkeypatch, f"127.0.0.1:{port_of(site.url)}")
    page = site.page_url(target.ws_url, in_worker=in_worker)
    outcome = websocket_outcome(settings, f"browser-ws-closed-{int(in_worker)}", page)
    assert outcome in {"error", "closed:1006"}
    assert target.connections == []


@pytest.fixture
def fresh_driver() -> Iterator[None]:
    """A Playwright driver started inside the test (it reads its environment at start)."""
    browser_action.shutdown()
    try:
        yield
    finally:
        browser_action.shutdown()


@pytest.mark.temporal
@pytest.mark.usefixtures("fresh_driver")
def test_loopback_goes_through_the_proxy_even_if_playwright_is_told_not_to(
    settings: EngineSettings,
    site: WebSocketSite,
    target: WebSocketSite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK in the worker's environment changes nothing."""
    monkeypatch.setenv("PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK", "1")
    open_only(monkeypatch, f"127.0.0.1:{port_of(site.url)}")
    outcome = websocket_outcome(settings, "browser-ws-env-1", site.page_url(target.ws_url))
    assert outcome in {"error", "closed:1006"}
    assert target.connections == []


@pytest.mark.temporal
def test_websocket_the_policy_opens_still_works(
    settings: EngineSettings,
    site: WebSocketSite,
    target: WebSocketSite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the target's port open, the page's WebSocket connects through the proxy and echoes."""
    open_only(monkeypatch, f"127.0.0.1:{port_of(site.url)}", f"127.0.0.1:{port_of(target.url)}")
    page = site.page_url(target.ws_url)
    assert websocket_outcome(settings, "browser-ws-open-1", page) == "echo:ping"
    assert target.requests == ["GET /echo HTTP/1.1"]


@pytest.fixture
def pinned_and_victim(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[WebSocketSite, WebSocketSite]]:
    """Two servers on one port: the allowed 127.0.0.2 and the forbidden 127.0.0.1.

    The worker's resolver answers `localhost` on that port with 127.0.0.2 — the answer the
    egress check sees — while every other resolver (Chromium's, Playwright's) still answers
    127.0.0.1: a DNS answer that changed between the check and the connection.
    """
    victim = WebSocketSite(title="victim").start()
    port = port_of(victim.url)
    pinned = WebSocketSite(host="127.0.0.2", port=port, title="pinned").start()
    system = socket.getaddrinfo

    def rebinding(host: Any, port_: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "localhost" and port_ == port:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
        return system(host, port_, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    open_only(monkeypatch, f"127.0.0.2:{port}")
    try:
        yield pinned, victim
    finally:
        pinned.stop()
        victim.stop()


@pytest.mark.temporal
def test_the_browser_connects_to_the_address_the_check_resolved(
    settings: EngineSettings, pinned_and_victim: tuple[WebSocketSite, WebSocketSite]
) -> None:
    """A page on a name the check resolved to an open address is fetched from that address only."""
    pinned, victim = pinned_and_victim
    url = f"http://localhost:{port_of(victim.url)}/"
    result = browse(
        settings,
        "browser-rebind-1",
        {"do": "goto", "url": url},
        {"do": "extract", "name": "title", "selector": "h1"},
    )
    assert result["status"] == "completed", result["error"]
    assert result["output"]["out"]["title"] == "pinned"
    assert pinned.requests == ["GET / HTTP/1.1"]
    assert victim.connections == []


@pytest.mark.temporal
def test_webrtc_sends_no_udp_past_the_proxy(
    settings: EngineSettings, site: WebSocketSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page gathering ICE candidates against a STUN server on loopback sends it nothing."""
    open_only(monkeypatch, f"127.0.0.1:{port_of(site.url)}")
    sink = UdpSink().start()
    try:
        query = urlencode({"stun": f"stun:127.0.0.1:{sink.port}"})
        result = browse(
            settings,
            "browser-webrtc-1",
            {"do": "goto", "url": f"{site.url}/rtc-page?{query}"},
            {"do": "wait_for", "selector": "#rtc[data-done]", "state": "attached"},
            {"do": "extract", "name": "rtc", "selector": "#rtc"},
        )
    finally:
        sink.stop()
    assert sink.datagrams == []
    assert result["status"] == "completed", result["error"]
    assert result["output"]["out"]["rtc"] == "gathered"
