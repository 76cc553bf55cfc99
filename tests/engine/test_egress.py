"""The egress policy refuses SSRF destinations at connect time, in `http.request` and runs."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from amosflow import egress
from amosflow.config import EngineSettings
from amosflow.dsl.actions import validate_with
from amosflow.egress import (
    AllowEntry,
    EgressDeniedError,
    EgressPolicy,
    EgressPolicyError,
    check_address,
    check_url,
    guarded_client,
    internal_ports,
    parse_host,
)
from amosflow.engine.activities import ActionContext, ArtifactStore
from amosflow.engine.activities import http as http_action
from amosflow.engine.client import RunRequest, connect, new_run_id, result_of, start_run
from amosflow.engine.types import ActionCall
from amosflow.engine.worker import build_worker
from amosflow.errors import ActionError
from tests.engine.flows import flow, http
from tests.support.httpserver import LoopbackServer

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
OPEN = EgressPolicy()  # no egress config at all: public open, the rest closed


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def denied(url: str, policy: EgressPolicy = OPEN) -> EgressDeniedError:
    with pytest.raises(EgressDeniedError) as caught:
        check_url(url, policy)
    assert caught.value.type == "EgressDenied"
    assert caught.value.retryable is False
    return caught.value


# -- parsing every spelling of a host -------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", V4("127.0.0.1")),
        ("2130706433", V4("127.0.0.1")),
        ("0x7f000001", V4("127.0.0.1")),
        ("0X7F000001", V4("127.0.0.1")),
        ("0177.0.0.1", V4("127.0.0.1")),
        ("0177.0000.0.01", V4("127.0.0.1")),
        ("017700000001", V4("127.0.0.1")),
        ("127.1", V4("127.0.0.1")),
        ("127.0.1", V4("127.0.0.1")),
        ("0x7f.1", V4("127.0.0.1")),
        ("0x7f.0x0.0x0.0x1", V4("127.0.0.1")),
        ("127.0.0.1.", V4("127.0.0.1")),
        ("0", V4("0.0.0.0")),
        ("169.254.169.254", V4("169.254.169.254")),
        ("2852039166", V4("169.254.169.254")),
        ("0xa9fea9fe", V4("169.254.169.254")),
        ("0251.0376.0251.0376", V4("169.254.169.254")),
        ("169.16689662", V4("169.254.169.254")),
        ("１２７.０.０.１", V4("127.0.0.1")),  # full-width digits map to ASCII (UTS 46)  # noqa: RUF001
        ("[::1]", V6("::1")),
        ("::1", V6("::1")),
        ("[0:0:0:0:0:0:0:1]", V6("::1")),
        ("[::ffff:169.254.169.254]", V6("::ffff:a9fe:a9fe")),
        ("[::ffff:a9fe:a9fe]", V6("::ffff:a9fe:a9fe")),
        ("[fe80::1%25eth0]", V6("fe80::1%eth0")),
        ("[fe80::1%eth0]", V6("fe80::1%eth0")),
        ("LOCALHOST", "localhost"),
        ("localhost.", "localhost"),
        ("Api.Example.COM.", "api.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("under_score.example", "under_score.example"),
    ],
)
def test_parse_host_normalises_every_spelling(host: str, expected: object) -> None:
    """Decimal, octal, hex, short, IPv6, mapped, zone ids, trailing dots and IDNA all normalise."""
    assert parse_host(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "",
        "08.1",  # ends in a number but 08 is no octal
        "1.2.3.4.5",
        "256.0.0.1",
        "127.0.0.256",
        "0x100000000",
        "4294967296",
        "1.2.3.0x",
        "[::1",
        "[fe80::1%25]",
        "[fe80::1%25eth 0]",
        "[127.0.0.1]",
        "%31%32%37.0.0.1",
        "exa mple.com",
        "-bad.example",
        "a..b",
        "localhost..",
        "x" * 64 + ".example",
    ],
)
def test_parse_host_refuses_malformed_hosts(host: str) -> None:
    """Anything that is neither a clean name nor an address is refused, not guessed at."""
    with pytest.raises(ValueError, match=r"."):
        parse_host(host)


def test_mapped_and_zoned_addresses_are_checked_as_what_they_reach() -> None:
    """IPv4-mapped IPv6 is checked as IPv4; a zone id does not change the address."""
    with pytest.raises(EgressDeniedError, match=r"169\.254\.169\.254 is a cloud metadata"):
        check_address("::ffff:169.254.169.254", 80, "::ffff:169.254.169.254", OPEN)
    with pytest.raises(EgressDeniedError, match="link-local"):
        check_address("fe80::1%eth0", 80, "fe80::1%eth0", OPEN)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("fec0::1", "reserved"),
        ("::7f00:1", "embedding 127.0.0.1"),  # IPv4-compatible
        ("::ffff:0:7f00:1", "embedding 127.0.0.1"),  # IPv4-translated
        ("64:ff9b::a9fe:a9fe", "embedding 169.254.169.254"),  # NAT64
        ("2002:7f00:1::", "embedding 127.0.0.1"),  # 6to4
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, kind: str) -> None:
    """Without egress config every non-public address is refused, and says what it is."""
    with pytest.raises(EgressDeniedError, match=kind):
        check_address(address, 443, address, OPEN)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_open_by_default(address: str) -> None:
    """The machine is air-gapped anyway: public addresses are open without an allow list."""
    check_address(address, 443, address, OPEN)


# -- the SSRF corpus, refused by check_url ----------------------------------------------------------

CORPUS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://[fe80::1%25eth0]/",
    "file:///etc/passwd",
    "gopher://x/",
    "ftp://example.com/",
    "data:text/plain,hi",
    "dict://127.0.0.1:11211/",
    "HTTP://0/",
    "http://user:pass@127.0.0.1/",
    "http://example.com\\@127.0.0.1/",
    "http://127.0.0.1 /",
    "http://[::1]:8080/",
    "http://10.0.0.1/",
    "http://127.0.0.1.:80/",
]


@pytest.mark.parametrize("url", CORPUS)
def test_ssrf_corpus_is_refused(url: str) -> None:
    """Every URL of the corpus is refused before any connection, with a clear reason."""
    for _ in range(3):  # every time, not just the first
        error = denied(url)
        assert str(error).startswith("egress to ")
        assert "refused: " in str(error)
        assert "pass" not in str(error)  # userinfo is never repeated


def test_refusals_name_the_host_and_the_reason() -> None:
    """The message says which host and why, and how to open it when that is possible."""
    assert str(denied("http://0x7f000001:8080/")) == (
        "egress to 0x7f000001:8080 refused: its address 127.0.0.1 is a loopback address;"
        " only an egress.allow entry naming it ('127.0.0.1:8080') opens it"
    )
    assert "scheme 'file' is not allowed" in str(denied("file:///etc/passwd"))
    assert "egress to 169.254.169.254:80 refused" in str(denied("http://169.254.169.254/"))


# -- allow lists ----------------------------------------------------------------------------------

EXAMPLE = {
    "egress": {
        "allow": ["api.example.com", "*.corp.example", "10.20.0.0/16", "127.0.0.1:8080"],
        "allow_private": False,
    }
}


def test_allow_list_opens_only_what_it_lists() -> None:
    """With an allow list, only listed names, networks and host:port pairs are open."""
    policy = EgressPolicy.from_config(EXAMPLE)
    check_address("93.184.216.34", 443, "api.example.com", policy)
    check_address("93.184.216.34", 443, "deep.eu.corp.example", policy)
    check_address("10.20.3.4", 443, "10.20.3.4", policy)
    check_address("127.0.0.1", 8080, "127.0.0.1", policy)
    for address, port, host in [
        ("93.184.216.34", 443, "other.example"),  # a public address, but not listed
        ("93.184.216.34", 443, "corp.example"),  # `*.` is below the name, not the name
        ("93.184.216.34", 443, "93.184.216.34"),
    ]:
        with pytest.raises(EgressDeniedError, match="not in the egress allow list"):
            check_address(address, port, host, policy)
    with pytest.raises(EgressDeniedError, match=re.escape("10.21.0.1 is a private address")):
        check_address("10.21.0.1", 443, "10.21.0.1", policy)
    with pytest.raises(EgressDeniedError, match=re.escape("127.0.0.1 is a loopback address")):
        check_address("127.0.0.1", 8081, "127.0.0.1", policy)  # listed, but another port


def test_a_listed_name_does_not_open_a_non_public_address() -> None:
    """DNS can point a listed name anywhere: its addresses must still be public (or listed)."""
    policy = EgressPolicy.from_config(EXAMPLE)
    with pytest.raises(EgressDeniedError, match=re.escape("its address 127.0.0.1 is a loopback")):
        check_address("127.0.0.1", 443, "api.example.com", policy)
    with pytest.raises(EgressDeniedError, match=re.escape("its address 10.9.9.9 is a private")):
        check_address("10.9.9.9", 443, "erp.corp.example", policy)
    with pytest.raises(EgressDeniedError, match="cloud metadata"):
        check_address("169.254.169.254", 80, "api.example.com", policy)


def test_allow_private_opens_private_ranges_but_not_loopback_or_metadata() -> None:
    """allow_private opens RFC 1918, ULA and shared space; loopback and metadata stay closed."""
    policy = EgressPolicy.from_config({"egress": {"allow_private": True}})
    check_address("10.9.9.9", 443, "erp.corp.example", policy)
    check_address("fd12::1", 443, "fd12::1", policy)
    for address in ["127.0.0.1", "169.254.169.254", "100.100.100.200", "fd00:ec2::254"]:
        with pytest.raises(EgressDeniedError):
            check_address(address, 80, address, policy)


def test_cidr_allow_opens_a_range() -> None:
    """A CIDR entry opens every address inside it, loopback included, on any port."""
    policy = EgressPolicy.from_config({"egress": {"allow": ["127.0.0.0/8", "fd00:1::/32"]}})
    check_address("127.0.0.1", 1234, "127.0.0.1", policy)
    check_address("127.9.9.9", 80, "127.9.9.9", policy)
    check_address("fd00:1::5", 80, "fd00:1::5", policy)
    with pytest.raises(EgressDeniedError, match=re.escape("10.0.0.1 is a private address")):
        check_address("10.0.0.1", 80, "10.0.0.1", policy)
    with pytest.raises(EgressDeniedError, match="not in the egress allow list"):
        check_address("93.184.216.34", 80, "93.184.216.34", policy)


def test_metadata_opens_only_to_an_entry_naming_exactly_it() -> None:
    """A range around a metadata address does not open it; the single address does."""
    ranged = EgressPolicy.from_config({"egress": {"allow": ["169.254.0.0/16"]}})
    check_address("169.254.1.1", 80, "169.254.1.1", ranged)
    with pytest.raises(EgressDeniedError, match="naming exactly this address"):
        check_address("169.254.169.254", 80, "169.254.169.254", ranged)
    exact = EgressPolicy.from_config({"egress": {"allow": ["169.254.169.254"]}})
    check_address("169.254.169.254", 80, "169.254.169.254", exact)


def test_internal_port_on_an_allowed_host_is_refused_unless_named() -> None:
    """The platform's own ports stay closed on an open host unless an entry names the port."""
    host_only = EgressPolicy.from_config(
        {"egress": {"allow": ["127.0.0.1", "api.example.com"]}}, internal_ports=frozenset({7233})
    )
    check_address("127.0.0.1", 8080, "127.0.0.1", host_only)
    with pytest.raises(EgressDeniedError, match="port 7233 is an internal port"):
        check_address("127.0.0.1", 7233, "127.0.0.1", host_only)
    with pytest.raises(EgressDeniedError, match="port 7233 is an internal port"):
        check_address("93.184.216.34", 7233, "api.example.com", host_only)
    with pytest.raises(EgressDeniedError, match="internal port"):
        check_address(
            "93.184.216.34", 7233, "x.example", EgressPolicy(internal_ports=frozenset({7233}))
        )
    named = EgressPolicy.from_config(
        {"egress": {"allow": ["127.0.0.1:7233"]}}, internal_ports=frozenset({7233})
    )
    check_address("127.0.0.1", 7233, "127.0.0.1", named)


def test_worker_entries_open_without_turning_the_allow_list_on() -> None:
    """AMOS_EGRESS_ALLOW entries open what they name but do not close the public internet."""
    policy = EgressPolicy.from_config({}, extra_allow=["127.0.0.1"])
    check_address("127.0.0.1", 5000, "127.0.0.1", policy)
    check_address("93.184.216.34", 443, "example.com", policy)
    listed = EgressPolicy.from_config({"egress": {"allow": []}}, extra_allow=["127.0.0.1"])
    check_address("127.0.0.1", 5000, "127.0.0.1", listed)
    with pytest.raises(EgressDeniedError, match="not in the egress allow list"):
        check_address("93.184.216.34", 443, "example.com", listed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api.example.com", AllowEntry("api.example.com", name="api.example.com")),
        ("API.example.com.:443", AllowEntry("API.example.com.:443", 443, name="api.example.com")),
        ("*.corp.example", AllowEntry("*.corp.example", name="corp.example", wildcard=True)),
        ("10.20.0.0/16", AllowEntry("10.20.0.0/16", network=ipaddress.ip_network("10.20.0.0/16"))),
        (
            "127.0.0.1:8080",
            AllowEntry("127.0.0.1:8080", 8080, network=ipaddress.ip_network("127.0.0.1/32")),
        ),
        ("0x7f000001", AllowEntry("0x7f000001", network=ipaddress.ip_network("127.0.0.1/32"))),
        ("fd00::/8", AllowEntry("fd00::/8", network=ipaddress.ip_network("fd00::/8"))),
        (
            "[fd00::1]:8443",
            AllowEntry("[fd00::1]:8443", 8443, network=ipaddress.ip_network("fd00::1/128")),
        ),
        (
            "[::ffff:10.0.0.0/104]:80",
            AllowEntry("[::ffff:10.0.0.0/104]:80", 80, network=ipaddress.ip_network("10.0.0.0/8")),
        ),
    ],
)
def test_allow_entries_parse(text: str, expected: AllowEntry) -> None:
    """Names, wildcards, addresses (any spelling), CIDRs and bracketed IPv6, with ports."""
    assert AllowEntry.parse(text) == expected


@pytest.mark.parametrize(
    "config",
    [
        {"egress": "127.0.0.1"},
        {"egress": {"allow": "127.0.0.1"}},
        {"egress": {"allow": [1]}},
        {"egress": {"allow": ["127.0.0.1:0"]}},
        {"egress": {"allow": ["127.0.0.1:http"]}},
        {"egress": {"allow": ["*.10.0.0.1"]}},
        {"egress": {"allow": ["10.0.0.0/33"]}},
        {"egress": {"allow": ["http://example.com"]}},
        {"egress": {"allow_private": "yes"}},
        {"egress": {"deny": ["x"]}},
    ],
)
def test_malformed_egress_config_fails_closed(config: dict[str, Any]) -> None:
    """A policy that cannot be read refuses the request instead of guessing."""
    with pytest.raises(EgressPolicyError) as caught:
        EgressPolicy.from_config(config)
    assert caught.value.type == "EgressPolicyInvalid"
    assert caught.value.retryable is False


def test_frozen_effective_config_values_are_read() -> None:
    """EffectiveConfig values are deep-frozen (mapping proxies, tuples); they work too."""
    from types import MappingProxyType

    frozen = MappingProxyType({"egress": MappingProxyType({"allow": ("127.0.0.1:1",)})})
    policy = EgressPolicy.from_config(frozen)
    assert policy.allow == (AllowEntry.parse("127.0.0.1:1"),)


def test_internal_ports_come_from_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Temporal, NATS and API ports from the settings, defaults, and addresses passed in."""
    monkeypatch.setenv("AMOS_HOME", str(tmp_path))
    monkeypatch.setenv("AMOS_TEMPORAL_ADDRESS", "127.0.0.1:17233")
    monkeypatch.setenv("AMOS_NATS_URL", "nats://127.0.0.1:14222,nats://10.0.0.2:14223")
    monkeypatch.setenv("AMOS_API_PORT", "18686")
    ports = internal_ports("temporal.internal:27233")
    assert {17233, 14222, 14223, 18686, 27233, 7233, 4222, 8686} <= ports


# -- connecting: the transport resolves, checks and pins ----------------------------------------------


class _Redirector(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1: `/to?url=…` answers 302 to that URL, `/loop` to itself."""

    protocol_version = "HTTP/1.1"
    hits: list[tuple[str, str]]

    def log_message(self, *_args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.hits.append((self.path, self.headers.get("host", "")))
        parts = urlsplit(self.path)
        if parts.path == "/to":
            self._answer(302, location=parse_qs(parts.query)["url"][0])
        elif parts.path == "/loop":
            self._answer(302, location="/loop")
        else:
            self._answer(200)

    def _answer(self, status: int, location: str | None = None) -> None:
        self.send_response(status)
        if location is not None:
            self.send_header("location", location)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def redirector() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A loopback server that redirects; yields its base URL and the (path, Host) it saw."""
    hits: list[tuple[str, str]] = []
    handler = type("Handler", (_Redirector,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def fetch(policy: EgressPolicy, url: str, **kw: Any) -> httpx.Response:
    """One GET through a guarded client (and its own event loop)."""
    resolver = kw.pop("resolver", None)

    async def go() -> httpx.Response:
        extra = {"resolver": resolver} if resolver else {}
        async with guarded_client(policy, **extra) as client:
            return await client.get(url, timeout=5, **kw)

    return asyncio.run(go())


def test_loopback_server_is_refused_unless_allowed_by_host_and_port(
    http_server: LoopbackServer,
) -> None:
    """127.0.0.1:<port> is closed by default and opens only to `127.0.0.1:<port>`."""
    port = port_of(http_server.url)
    for _ in range(2):
        with pytest.raises(EgressDeniedError, match=f"egress to 127.0.0.1:{port} refused"):
            fetch(OPEN, http_server.url + "/x")
    other = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port + 1}"]}})
    with pytest.raises(EgressDeniedError, match=re.escape("127.0.0.1 is a loopback address")):
        fetch(other, http_server.url + "/x")
    assert http_server.requests == []
    allowed = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port}"]}})
    assert fetch(allowed, http_server.url + "/x").status_code == 200
    assert [r.path for r in http_server.requests] == ["/x"]


def test_cidr_allow_reaches_the_loopback_server(http_server: LoopbackServer) -> None:
    """A CIDR entry opens the loopback server through the real connection path."""
    policy = EgressPolicy.from_config({"egress": {"allow": ["127.0.0.0/8"]}})
    assert fetch(policy, http_server.url + "/cidr").status_code == 200


def test_a_name_resolving_to_loopback_is_refused_at_connect(http_server: LoopbackServer) -> None:
    """`localhost` passes the URL check as a name; its resolved address is refused."""
    port = port_of(http_server.url)
    check_url(f"http://localhost:{port}/", OPEN)  # a name: decided when connecting
    with pytest.raises(EgressDeniedError, match=r"egress to localhost:\d+ refused: its address"):
        fetch(OPEN, f"http://localhost:{port}/")
    with pytest.raises(EgressDeniedError, match="loopback"):
        fetch(OPEN, "http://localhost/")
    assert http_server.requests == []


def test_every_resolved_address_is_checked(http_server: LoopbackServer) -> None:
    """A name resolving to a public and a loopback address is refused as a whole."""
    calls: list[str] = []

    async def resolver(host: str, _port: int) -> list[str]:
        calls.append(host)
        return {"mixed.test": ["93.184.216.34", "127.0.0.1"], "meta.test": ["169.254.169.254"]}[
            host
        ]

    with pytest.raises(
        EgressDeniedError, match=r"egress to mixed.test:80 refused: its address 127"
    ):
        fetch(OPEN, "http://mixed.test/", resolver=resolver)
    with pytest.raises(EgressDeniedError, match="cloud metadata"):
        fetch(OPEN, "http://meta.test/", resolver=resolver)
    assert calls == ["mixed.test", "meta.test"]


def test_connects_to_the_checked_address_and_keeps_the_name(http_server: LoopbackServer) -> None:
    """One resolution; the connection goes to the address checked, the Host header keeps the name.

    A rebinding resolver that answers the metadata address on any later lookup never wins.
    """
    port = port_of(http_server.url)
    answers = iter([["127.0.0.1"]])

    async def rebinding(_host: str, _port: int) -> list[str]:
        return next(answers, ["169.254.169.254"])

    policy = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port}"]}})
    response = fetch(policy, f"http://rebind.test:{port}/pinned", resolver=rebinding)
    assert response.status_code == 200
    assert http_server.requests[0].headers["host"] == f"rebind.test:{port}"
    with pytest.raises(EgressDeniedError, match="cloud metadata"):
        fetch(policy, f"http://rebind.test:{port}/again", resolver=rebinding)


def test_redirects_are_not_followed_by_default(redirector) -> None:
    """Without follow_redirects the 302 itself is the answer."""
    base, hits = redirector
    policy = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port_of(base)}"]}})
    response = fetch(policy, f"{base}/to?url=http://169.254.169.254/")
    assert response.status_code == 302
    assert len(hits) == 1


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://0x7f000001/", "loopback"),
        ("http://localhost/", "egress to localhost:80 refused"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://x/", "scheme 'gopher'"),
    ],
)
def test_a_redirect_hop_to_a_closed_destination_is_refused(
    redirector, target: str, reason: str
) -> None:
    """Each hop is checked like the first: a redirect to an internal address is refused."""
    base, hits = redirector
    policy = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port_of(base)}"]}})
    with pytest.raises(EgressDeniedError, match=reason):
        fetch(policy, f"{base}/to?url={target}", follow_redirects=True)
    assert len(hits) == 1


def test_an_open_redirect_hop_is_followed_and_loops_stop(redirector) -> None:
    """A hop to an open destination is followed; more than five hops end the request."""
    base, hits = redirector
    policy = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port_of(base)}"]}})
    response = fetch(policy, f"{base}/to?url={base}/landed", follow_redirects=True)
    assert response.status_code == 200
    assert [path for path, _ in hits] == [f"/to?url={base}/landed", "/landed"]
    with pytest.raises(httpx.TooManyRedirects):
        fetch(policy, f"{base}/loop", follow_redirects=True)


# -- the http.request action -----------------------------------------------------------------------


def call_action(tmp_path: Path, config: dict[str, Any], **with_: Any) -> dict[str, Any]:
    """Run the `http.request` implementation directly with a given run config."""
    call = ActionCall(
        action="http.request",
        with_=with_,
        run_id="r",
        step_id="s",
        iteration="0",
        idempotency_key="r/s/0",
    )
    ctx = ActionContext(call=call, artifacts=ArtifactStore(tmp_path / "a"), config=config)
    params = validate_with("http.request", with_)
    return asyncio.run(http_action.request(ctx, params))


@pytest.fixture
def no_worker_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AMOS_EGRESS_ALLOW: only the run's config opens anything."""
    monkeypatch.delenv("AMOS_EGRESS_ALLOW", raising=False)


@pytest.mark.usefixtures("no_worker_allow")
def test_action_refuses_the_whole_corpus(http_server: LoopbackServer, tmp_path: Path) -> None:
    """`http.request` refuses every corpus URL and the unallowed loopback server, every time."""
    urls = [*CORPUS, http_server.url + "/", f"http://localhost:{port_of(http_server.url)}/"]
    for url in urls:
        for _ in range(2):
            with pytest.raises(EgressDeniedError) as caught:
                call_action(tmp_path, {}, url=url)
            assert caught.value.type == "EgressDenied"
            assert not caught.value.retryable
    assert http_server.requests == []


@pytest.mark.usefixtures("no_worker_allow")
def test_action_follows_the_run_config(
    http_server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's egress config opens the server; its port as an internal port closes it again."""
    port = port_of(http_server.url)
    opened = {"egress": {"allow": ["127.0.0.1"]}}
    assert call_action(tmp_path, opened, url=http_server.url + "/ok")["status"] == 200
    monkeypatch.setenv("AMOS_API_PORT", str(port))  # now the server's port is the API's
    with pytest.raises(EgressDeniedError, match=f"port {port} is an internal port"):
        call_action(tmp_path, opened, url=http_server.url + "/internal")
    named = {"egress": {"allow": [f"127.0.0.1:{port}"]}}
    assert call_action(tmp_path, named, url=http_server.url + "/named")["status"] == 200
    assert [r.path for r in http_server.requests] == ["/ok", "/named"]


@pytest.mark.usefixtures("no_worker_allow")
def test_action_redirects_follow_the_policy(redirector, tmp_path: Path) -> None:
    """follow_redirects follows open hops and refuses a hop to the metadata address."""
    base, _ = redirector
    config = {"egress": {"allow": [f"127.0.0.1:{port_of(base)}"]}}
    landed = call_action(
        tmp_path, config, url=f"{base}/to?url={base}/landed", follow_redirects=True
    )
    assert landed["status"] == 200
    with pytest.raises(EgressDeniedError, match="cloud metadata"):
        call_action(
            tmp_path,
            config,
            url=f"{base}/to?url=http://169.254.169.254/latest/meta-data/",
            follow_redirects=True,
        )
    with pytest.raises(ActionError) as caught:
        call_action(tmp_path, config, url=f"{base}/loop", follow_redirects=True)
    assert caught.value.type == "TooManyRedirects"
    unfollowed = call_action(tmp_path, config, url=f"{base}/to?url=http://169.254.169.254/")
    assert unfollowed["status"] == 302


def test_each_policy_has_its_own_connection_pool() -> None:
    """A connection opened under one policy is never lent to a run with another."""
    first = EgressPolicy.from_config({"egress": {"allow": ["127.0.0.1"]}})
    second = EgressPolicy.from_config({})

    async def go() -> None:
        async with (
            http_action._client_for(first) as a,
            http_action._client_for(second) as b,
            http_action._client_for(
                EgressPolicy.from_config({"egress": {"allow": ["127.0.0.1"]}})
            ) as c,
        ):
            assert a is not b
            assert a is c

    asyncio.run(go())


# -- inside a real run on the session Temporal server -------------------------------------------------


def run_with_config(
    settings: EngineSettings, doc: dict[str, Any], config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Start a run with an Effective Config on a worker of this test's queue; return its result."""

    async def go() -> dict[str, Any]:
        client = await connect(str(settings.temporal_address))
        request = RunRequest(
            flow=doc, inputs={}, library={}, run_id=new_run_id(doc["name"]), config=config
        )
        async with build_worker(client, settings):
            handle = await start_run(client, request, task_queue=settings.task_queue, eager=True)
            return await result_of(handle)

    return asyncio.run(go())


@pytest.mark.temporal
def test_run_is_refused_loopback_without_egress_config(
    settings: EngineSettings, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a real run the activity applies the policy: loopback fails, once, as EgressDenied."""
    monkeypatch.delenv("AMOS_EGRESS_ALLOW")
    port = port_of(http_server.url)
    result = run_with_config(settings, flow(http("call", http_server.url + "/x"), name="egress"))
    assert result["status"] == "failed"
    assert result["error"]["type"] == "EgressDenied"
    assert result["error"]["step"] == "call"
    assert f"egress to 127.0.0.1:{port} refused" in result["error"]["message"]
    assert http_server.requests == []


@pytest.mark.temporal
def test_run_config_opens_the_loopback_server(
    settings: EngineSettings, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's Effective Config (`egress.allow`) reaches the activity and opens 127.0.0.1:port."""
    monkeypatch.delenv("AMOS_EGRESS_ALLOW")
    port = port_of(http_server.url)
    doc = flow(
        http("call", http_server.url + "/x"),
        name="egress",
        outputs={"status": "${steps.call.output.status}"},
    )
    config = {"egress": {"allow": [f"127.0.0.1:{port}"]}}
    result = run_with_config(settings, doc, config)
    assert result["status"] == "completed", result
    assert result["output"] == {"status": 200}
    assert [r.path for r in http_server.requests] == ["/x"]


@pytest.mark.temporal
def test_run_redirect_to_metadata_is_refused(
    settings: EngineSettings, redirector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A followed redirect from an allowed server to 169.254.169.254 fails the step, unretried."""
    monkeypatch.delenv("AMOS_EGRESS_ALLOW")
    base, hits = redirector
    step = http(
        "call", f"{base}/to?url=http://169.254.169.254/latest/meta-data/", follow_redirects=True
    )
    config = {"egress": {"allow": [f"127.0.0.1:{port_of(base)}"]}}
    result = run_with_config(settings, flow(step, name="egress"), config)
    assert result["status"] == "failed"
    assert result["error"]["type"] == "EgressDenied"
    assert "169.254.169.254" in result["error"]["message"]
    assert len(hits) == 1  # not retried


@pytest.mark.temporal
def test_run_cannot_reach_the_temporal_port(settings: EngineSettings, temporal_server: Any) -> None:
    """With 127.0.0.1 open (as the test fixtures do), the Temporal frontend's port stays closed."""
    url = f"http://{temporal_server.address}/"
    result = run_with_config(settings, flow(http("call", url), name="egress"))
    assert result["status"] == "failed"
    assert result["error"]["type"] == "EgressDenied"
    assert f"port {port_of(url)} is an internal port" in result["error"]["message"]


def test_egress_module_exports() -> None:
    """The public API is what decision 0024 describes."""
    assert {
        "EgressPolicy",
        "check_url",
        "check_address",
        "EgressTransport",
        "internal_ports",
    } <= set(egress.__all__)
