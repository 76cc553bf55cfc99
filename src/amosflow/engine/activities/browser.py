"""`browser.run`: the commands of one job on a fresh context of the worker's one Chromium.

Playwright drives Debian's Chromium (``AMOS_CHROMIUM``, default ``/usr/bin/chromium``) through
``executable_path``; nothing is ever downloaded (decision 0026). Playwright's objects belong to
the event loop that made them, so the browser lives on a private loop in a daemon thread: one
Chromium per worker process, launched on first use, shared by every loop of the process, and
closed when the process exits (or by ``shutdown``). Each job gets its own browser context, so
no cookie or storage outlives it, and its failures name the command (``/commands/3: click
#submit timed out after 5s``) with every secret value masked.

Every connection the context opens — pages, sub-requests, redirects, WebSockets, workers —
goes through the job's own ``egress.EgressProxy``, which resolves the host once, checks it
against the run's policy and connects to the checked address (decision 0047).

Playwright is imported by the functions that use it (``# noqa: PLC0415 - lazy``): a process
that never runs a browser step, such as the single node's API, never loads its ~20 MB.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpcore

from amosflow import egress
from amosflow.dsl import parse_duration
from amosflow.dsl.actions import (
    BrowserClick,
    BrowserCommand,
    BrowserExtract,
    BrowserFill,
    BrowserGoto,
    BrowserRunWith,
    BrowserScreenshot,
    BrowserSelect,
    BrowserWaitFor,
)
from amosflow.engine.activities._base import ActionContext, implementation
from amosflow.errors import ActionError

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from playwright.async_api import (
        APIResponse,
        Browser,
        BrowserContext,
        Download,
        Page,
        Playwright,
        Route,
    )

    from amosflow.engine.activities import ArtifactStore

T = TypeVar("T")

CHROMIUM_ENV = "AMOS_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# No traffic of Chromium's own (updates, sync, field trials, QUIC probes) and no GPU; WebRTC
# may not send UDP, which no proxy sees (STUN or media to any address a page names).
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)
# Chromium sends loopback destinations past a proxy unless its bypass list says this; named
# here, not left to Playwright, which drops it when PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_
# PROXIED_LOOPBACK is set in the worker's environment.
PROXY_LOOPBACK_TOO = "<-loopback>"
ALLOWED_SCHEMES = frozenset({"http", "https"})
CLOSE_TIMEOUT_S = 10.0

# Header cells and body rows of a <table> (the element itself or the first one inside it).
_TABLE_JS = """(element) => {
  const table = element.tagName === "TABLE" ? element : element.querySelector("table");
  if (!table) return null;
  const text = (row) => Array.from(row.cells, (cell) => cell.innerText.trim());
  const rows = Array.from(table.rows);
  const head = table.tHead && table.tHead.rows.length ? table.tHead.rows[0] : rows[0];
  if (!head) return {headers: [], rows: []};
  const body = rows.filter((row) => row !== head && row.parentElement !== table.tHead);
  return {headers: text(head), rows: body.map(text)};
}"""


def chromium_args() -> list[str]:
    """Chromium's flags; ``--no-sandbox`` only as root, where Chromium refuses to start else."""
    flags = list(CHROMIUM_FLAGS)
    if os.geteuid() == 0:
        flags.insert(0, "--no-sandbox")
    return flags


def checked_url(url: str) -> str:
    """Admit a URL the browser is told to open: the one place to check it (http and https)."""
    if urlsplit(url).scheme.lower() not in ALLOWED_SCHEMES:
        raise ActionError(
            f"refused to open {url!r}: only http and https pages may be opened",
            type_="BrowserUrlRefused",
            retryable=False,
        )
    return url


REDIRECT_MIN, REDIRECT_MAX = 300, 400
#: Schemes that never leave the browser process.
_LOCAL_SCHEMES = frozenset({"data", "blob", "about"})


async def admit(url: str, policy: egress.EgressPolicy) -> None:
    """Refuse (EgressDenied) a URL whose host, resolved now, the policy does not open."""
    egress.check_url(url, policy)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    await egress.resolve(parts.hostname or "", port, policy)


async def _guard(policy: egress.EgressPolicy, route: Route) -> None:
    """The context's route handler: refuse early what the egress policy does not open."""
    from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy

    if urlsplit(route.request.url).scheme.lower() in _LOCAL_SCHEMES:
        await route.continue_()
        return
    try:
        outcome = await _fetch_checked(policy, route)
    except PlaywrightError:
        outcome = "failed"
    if isinstance(outcome, str):
        with contextlib.suppress(PlaywrightError):  # the context may be closing
            await route.abort(outcome)
        return
    await route.fulfill(response=outcome)


async def _fetch_checked(policy: egress.EgressPolicy, route: Route) -> APIResponse | str:
    """The response to give the page, or the error code to abort the request with.

    Chromium follows redirects without asking the route again, so the request is made here
    (without following redirects) and a redirect's target is checked before the browser
    sees it; following it then is a new request that comes through here too. The fetch
    itself goes through the job's egress proxy, which resolves again and connects only to
    the address it checked; its refusal (a rebinding answer) aborts the request too.
    """
    url = route.request.url
    try:
        await admit(url, policy)
        response = await route.fetch(max_redirects=0)
        proxy_answer = response.headers.get(egress.ANSWER_HEADER)
        if proxy_answer is not None:
            return "blockedbyclient" if proxy_answer == "refused" else "connectionfailed"
        location = response.headers.get("location")
        if REDIRECT_MIN <= response.status < REDIRECT_MAX and location:
            await admit(urljoin(url, location), policy)
    except ActionError:
        return "blockedbyclient"
    except (httpcore.ConnectError, httpcore.ConnectTimeout):
        return "namenotresolved"
    return response


def _chromium_env(home: Path) -> dict[str, str | float | bool]:
    """The worker's environment for Chromium: no AMOS_* (secret bindings stay out).

    Chromium's config and cache, its crash database included, go under ``home``.
    """
    env: dict[str, str | float | bool] = {
        k: v for k, v in os.environ.items() if not k.startswith("AMOS_")
    }
    env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"))
    return env


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class _BrowserHost:
    """The worker process's one Chromium, on a private event loop in a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._launching = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._home: Path | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="amos-browser", daemon=True)
                thread.start()
                self._loop, self._thread, self._launching = loop, thread, asyncio.Lock()
                atexit.register(self.close)
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the browser's loop; cancelling the caller cancels it there too."""
        future = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
        return await asyncio.wrap_future(future)

    async def browser(self) -> Browser:
        """The running Chromium, launched on first use or after it went away (browser loop)."""
        async with self._launching:
            if self._browser is None or not self._browser.is_connected():
                self._browser = await self._launch()
            return self._browser

    async def _launch(self) -> Browser:
        from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy
        from playwright.async_api import async_playwright  # noqa: PLC0415 - lazy

        executable = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
        if not await asyncio.to_thread(Path(executable).is_file):
            raise ActionError(
                f"no Chromium at {executable}: install Debian's chromium package"
                f" or set {CHROMIUM_ENV}",
                type_="BrowserUnavailable",
                retryable=False,
            )
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        if self._home is None:
            self._home = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="amos-chromium-"))
        try:
            return await self._playwright.chromium.launch(
                executable_path=executable,
                headless=True,
                chromium_sandbox=True,  # Playwright adds no --no-sandbox; chromium_args decides
                args=chromium_args(),
                env=_chromium_env(self._home),
            )
        except PlaywrightError as err:
            raise ActionError(
                f"cannot launch Chromium at {executable}: {_first_line(err)}",
                type_="BrowserUnavailable",
            ) from None

    def close(self) -> None:
        """Close Chromium and Playwright and stop the thread (at exit, or when told to)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        atexit.unregister(self.close)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(CLOSE_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()
        home, self._home = self._home, None
        if home is not None:  # here, not on the loop: at exit no executor takes new work
            shutil.rmtree(home, ignore_errors=True)

    async def _stop(self) -> None:
        from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy

        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        if browser is not None:
            with contextlib.suppress(PlaywrightError):
                await browser.close()
        if playwright is not None:
            await playwright.stop()


_HOST = _BrowserHost()


def shutdown() -> None:
    """Close the worker's Chromium now; the next job launches a new one."""
    _HOST.close()


@dataclass
class _Session:
    """One job's browser context and page; every coroutine here runs on the browser loop."""

    context: BrowserContext
    page: Page
    proxy: egress.EgressProxy
    policy: egress.EgressPolicy
    downloads: list[Download] = field(default_factory=list)

    @classmethod
    async def open(
        cls, params: BrowserRunWith, timeout_ms: float, policy: egress.EgressPolicy
    ) -> _Session:
        """A fresh context (no cookies, no storage) with one page; downloads are kept.

        The context reaches the network only through its own egress proxy, so every
        connection (WebSockets and workers' requests included) is checked and pinned to the
        checked address; the route handler also refuses a request, or a redirect, early.
        """
        browser = await _HOST.browser()
        proxy = await egress.EgressProxy(policy).start()
        try:
            context = await browser.new_context(
                viewport={"width": params.viewport.width, "height": params.viewport.height},
                accept_downloads=True,
                service_workers="block",
                proxy={"server": proxy.url, "bypass": PROXY_LOOPBACK_TOO},
            )
        except BaseException:
            await proxy.aclose()
            raise
        try:
            context.set_default_timeout(timeout_ms)
            await context.route("**/*", partial(_guard, policy))
            downloads: list[Download] = []

            def keep(download: Download) -> None:
                downloads.append(download)

            context.on("page", lambda page: page.on("download", keep))
            page = await context.new_page()
        except BaseException:
            try:
                await context.close()
            finally:
                await proxy.aclose()
            raise
        return cls(context, page, proxy, policy, downloads)

    async def perform(self, command: BrowserCommand, timeout_ms: float) -> Any:
        """Do one command; an extract returns its value, a screenshot its PNG bytes."""
        page = self.page
        match command:
            case BrowserGoto():
                url = checked_url(command.url)
                await admit(url, self.policy)
                await page.goto(url, timeout=timeout_ms)
            case BrowserClick(download=True):
                async with page.expect_download(timeout=timeout_ms):
                    await page.locator(command.selector).click(timeout=timeout_ms)
            case BrowserClick():
                await page.locator(command.selector).click(timeout=timeout_ms)
            case BrowserFill():
                await page.locator(command.selector).fill(command.value, timeout=timeout_ms)
            case BrowserSelect():
                await page.locator(command.selector).select_option(
                    command.value, timeout=timeout_ms
                )
            case BrowserWaitFor():
                await page.locator(command.selector).first.wait_for(
                    state=command.state, timeout=timeout_ms
                )
            case BrowserExtract():
                return await self._extract(command, timeout_ms)
            case BrowserScreenshot():
                return await page.screenshot(
                    full_page=command.full_page, timeout=timeout_ms, type="png"
                )
        return None

    async def _extract(self, command: BrowserExtract, timeout_ms: float) -> Any:
        locator = self.page.locator(command.selector)
        match command.kind:
            case "text":
                return (await locator.inner_text(timeout=timeout_ms)).strip()
            case "attribute":
                return await locator.get_attribute(str(command.attribute), timeout=timeout_ms)
            case "all_text":
                return [text.strip() for text in await locator.all_inner_texts()]
        found = await locator.evaluate(_TABLE_JS, timeout=timeout_ms)
        if found is None:
            raise ActionError(f"no table at {command.selector}", type_="BrowserError")
        return table_rows(found["headers"], found["rows"])

    async def finish(self, timeout_s: float) -> tuple[str, list[tuple[str, Path]]]:
        """The final URL and the finished downloads (files live until the context closes)."""
        from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy

        files: list[tuple[str, Path]] = []
        for download in list(self.downloads):
            name = download.suggested_filename
            try:
                path = await asyncio.wait_for(download.path(), timeout_s)
            except (PlaywrightError, TimeoutError) as err:
                raise ActionError(
                    f"download {name!r} failed: {_first_line(err)}", type_="BrowserError"
                ) from None
            files.append((name, path))
        return self.page.url, files

    async def close(self) -> None:
        """Close the context (pages, cookies, storage, downloads), then its egress proxy."""
        from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy

        try:
            with contextlib.suppress(PlaywrightError):
                await self.context.close()
        finally:
            await self.proxy.aclose()


def table_rows(headers: list[str], rows: list[list[str]]) -> list[dict[str, str]]:
    """Key each row's cells by the header cells; blank or repeated headers get unique keys."""
    keys: list[str] = []
    for index, header in enumerate(headers):
        key = header or f"column_{index + 1}"
        if key in keys:
            key = f"{key}_{index + 1}"
        keys.append(key)
    result: list[dict[str, str]] = []
    for cells in rows:
        width = max(len(cells), len(keys))
        names = keys + [f"column_{i + 1}" for i in range(len(keys), width)]
        result.append(dict(zip(names, cells, strict=False)))
    return result


def describe(command: BrowserCommand) -> str:
    """A command as errors name it; a fill's value never appears."""
    match command:
        case BrowserGoto():
            return f"goto {command.url}"
        case BrowserScreenshot():
            return f"screenshot {command.name}"
        case BrowserExtract():
            return f"extract {command.name} from {command.selector}"
        case BrowserClick() | BrowserFill() | BrowserSelect() | BrowserWaitFor():
            return f"{command.do} {command.selector}"
    return command.do


def _unique(name: str, taken: dict[str, Any]) -> str:
    stem, dot, suffix = name.partition(".")
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    return candidate


def _store_file(store: ArtifactStore, path: Path) -> dict[str, Any]:
    return store.put(path.read_bytes())


async def _perform(
    ctx: ActionContext, session: _Session, index: int, command: BrowserCommand, limit: str
) -> Any:
    """Run one command on the browser loop; its failure names the command, secrets masked."""
    from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError  # noqa: PLC0415 - lazy

    timeout_ms = parse_duration(limit).total_seconds() * 1000
    where = f"/commands/{index}: {describe(command)}"
    try:
        return await _HOST.run(session.perform(command, timeout_ms))
    except PlaywrightTimeoutError:
        message, type_, retryable = f"{where} timed out after {limit}", "BrowserTimeout", True
    except PlaywrightError as err:
        message, type_, retryable = f"{where} failed: {_first_line(err)}", "BrowserError", True
    except ActionError as err:
        message, type_, retryable = f"{where} failed: {err}", err.type, err.retryable
    raise ActionError(ctx.redact(message), type_=type_, retryable=retryable)


@implementation("browser.run")
async def run(ctx: ActionContext, params: BrowserRunWith) -> dict[str, Any]:
    """Run the commands in order on a fresh context; return what they extracted and stored."""
    from playwright.async_api import Error as PlaywrightError  # noqa: PLC0415 - lazy

    timeout_s = parse_duration(params.timeout).total_seconds()
    try:
        policy = await egress.run_policy(ctx)
        session = await _HOST.run(_Session.open(params, timeout_s * 1000, policy))
    except PlaywrightError as err:
        raise ActionError(
            ctx.redact(f"cannot open a browser context: {_first_line(err)}"),
            type_="BrowserUnavailable",
        ) from None
    extracted: dict[str, Any] = {}
    screenshots: dict[str, Any] = {}
    downloads: dict[str, Any] = {}
    try:
        for index, command in enumerate(params.commands):
            own = command.timeout if isinstance(command, BrowserWaitFor) else None
            value = await _perform(ctx, session, index, command, own or params.timeout)
            if isinstance(command, BrowserExtract):
                extracted[command.name] = value
            elif isinstance(command, BrowserScreenshot):
                screenshots[command.name] = await asyncio.to_thread(ctx.artifacts.put, value)
            ctx.heartbeat({"command": index, "do": command.do})
        url, files = await _HOST.run(session.finish(timeout_s))
        for name, path in files:
            stored = await asyncio.to_thread(_store_file, ctx.artifacts, path)
            downloads[_unique(name, downloads)] = stored
    finally:
        await asyncio.shield(_HOST.run(session.close()))
    return {"extracted": extracted, "screenshots": screenshots, "downloads": downloads, "url": url}
