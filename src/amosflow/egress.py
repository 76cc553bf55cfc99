"""The egress policy: which destinations an action may connect to, enforced at connect time.

A run's policy comes from the ``egress`` key of its Effective Config (decision 0024)::

    {"egress": {"allow": ["api.example.com", "*.corp.example", "10.20.0.0/16",
                          "127.0.0.1:8080"],
                "allow_private": false}}

Without ``allow``, public addresses are open and everything else is refused: loopback,
private (RFC 1918, ULA, shared address space), link-local, cloud metadata, multicast,
unspecified and reserved addresses, and the platform's own ports. With ``allow``, only the
destinations it lists are open. A name entry never opens a non-public address by itself (a
name can be made to resolve anywhere); an address or CIDR entry does, and
``allow_private: true`` opens private addresses to any destination that is otherwise open.
Cloud metadata addresses open only to an entry naming that single address, and an internal
port only to an entry naming that port.

``EgressTransport`` resolves every host itself, checks each address with ``check_address``
and connects to the address it checked, so DNS rebinding between check and connect cannot
win; TLS SNI and the Host header keep the original name. ``EgressProxy`` does the same for
clients that take no transport (Chromium): a forward HTTP proxy on loopback whose every
tunnel and request is resolved, checked and connected here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeAlias
from urllib.parse import unquote, urlsplit

import httpcore
import httpx
import idna
from temporalio import activity

from amosflow.config import ApiSettings, BusSettings, EngineSettings
from amosflow.errors import ActionError
from amosflow.procs import live_state
from amosflow.runners.settings import RunnerSettings

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.engine.activities.base import ActionContext

__all__ = [
    "AllowEntry",
    "EgressDeniedError",
    "EgressPolicy",
    "EgressPolicyError",
    "EgressProxy",
    "EgressTransport",
    "check_address",
    "check_url",
    "guarded_client",
    "internal_ports",
    "parse_host",
    "resolve",
    "run_policy",
    "worker_allow",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]

SCHEMES = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
# Well-known ports of the platform's own services, refused even when not configured here.
DEFAULT_INTERNAL_PORTS = frozenset({7233, 4222, 8686})  # Temporal frontend, NATS, API

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
        "192.0.0.192",  # Oracle Cloud
    )
)
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# Non-global ranges Python 3.11's ``is_global`` still calls global.
EXTRA_RESERVED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("192.0.0.0/24", "fec0::/10", "64:ff9b:1::/48", "5f00::/16")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")

_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_OCTAL = re.compile(r"0[0-7]*")
_DECIMAL = re.compile(r"[1-9][0-9]*")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_ZONE = re.compile(r"[A-Za-z0-9_.~-]+")
_MAX_NAME = 253
_MAX_PORT = 65535
_IPV4_PARTS = 4
_BYTE = 256


class EgressDeniedError(ActionError):
    """A destination the run's egress policy refuses; never retried."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(
            f"egress to {host} refused: {reason}", type_="EgressDenied", retryable=False
        )


class EgressPolicyError(ActionError):
    """The ``egress`` config (or ``AMOS_EGRESS_ALLOW``) is malformed; fails closed."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"invalid egress policy: {message}", type_="EgressPolicyInvalid", retryable=False
        )


# -- hosts ------------------------------------------------------------------------------------


def _loose_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Parse the IPv4 spellings ``inet_aton`` accepts: 1-4 parts, decimal, octal or hex."""
    labels = text.split(".")
    if len(labels) > _IPV4_PARTS:
        return None
    numbers: list[int] = []
    for label in labels:
        if _HEX.fullmatch(label):
            numbers.append(int(label, 16))
        elif _OCTAL.fullmatch(label):
            numbers.append(int(label, 8))
        elif _DECIMAL.fullmatch(label):
            numbers.append(int(label))
        else:
            return None
    *leading, last = numbers
    if any(n >= _BYTE for n in leading) or last >= _BYTE ** (_IPV4_PARTS - len(leading)):
        return None
    value = last
    for position, n in enumerate(leading):
        value += n << (8 * (_IPV4_PARTS - 1 - position))
    return ipaddress.IPv4Address(value)


def _ipv6(text: str) -> ipaddress.IPv6Address:
    """An IPv6 literal, with an optional zone id (``%25eth0`` or ``%eth0``) accepted."""
    address, percent, zone = unquote(text).partition("%")
    if percent and not _ZONE.fullmatch(zone):
        raise ValueError(f"invalid IPv6 zone id in {text!r}")
    return ipaddress.IPv6Address(address + (f"%{zone}" if percent else ""))


def parse_host(host: str) -> IPAddress | str:
    """Normalise a URL host: an IP address (any spelling) or a lower-case ASCII name.

    Accepts ``[v6]`` (with a zone id), bare IPv6, every IPv4 spelling ``inet_aton`` knows
    (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``), a trailing dot and IDNA
    names; raises ``ValueError`` for anything else, including a name ending in a number that
    is no IPv4 address and percent-encoded names.
    """
    text = host.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"unbalanced brackets in host {host!r}")
        return _ipv6(text[1:-1])
    if ":" in text:
        return _ipv6(text)
    if not text or "%" in text:
        raise ValueError(f"invalid host {host!r}")
    return _name_or_ipv4(text, host)


def _name_or_ipv4(text: str, host: str) -> ipaddress.IPv4Address | str:
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as err:
            raise ValueError(f"invalid international host name {host!r}") from err
    text = text.lower().removesuffix(".")
    labels = text.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        address = _loose_ipv4(text)
        if address is None:
            raise ValueError(f"host {host!r} ends in a number but is no IPv4 address")
        return address
    if len(text) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"invalid host name {host!r}")
    return text


def _canonical(ip: IPAddress | str) -> IPAddress:
    """The address a connection reaches: zone id dropped, IPv4-mapped IPv6 as IPv4."""
    address = ip if not isinstance(ip, str) else parse_host(ip)
    if isinstance(address, str):
        raise ValueError(f"{ip!r} is not an IP address")  # noqa: TRY004 - callers expect it
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # drops the zone id
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a compatible, translated, NAT64, 6to4 or Teredo address."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _TRANSLATED or address in _COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


_CLASSES: tuple[tuple[str, str, Callable[[IPAddress], bool]], ...] = (
    ("metadata", "a cloud metadata address", lambda a: a in METADATA_ADDRESSES),
    (
        "unspecified",
        "the unspecified address (it reaches this machine)",
        lambda a: a.is_unspecified,
    ),
    ("loopback", "a loopback address", lambda a: a.is_loopback),
    ("link-local", "a link-local address", lambda a: a.is_link_local),
    ("multicast", "a multicast address", lambda a: a.is_multicast),
    ("private", "a private address", lambda a: any(a in n for n in PRIVATE_NETWORKS)),
)


def _classify(address: IPAddress) -> tuple[str, str] | None:
    """``(kind, description)`` of a non-public address; None for a public one."""
    for kind, text, test in _CLASSES:
        if test(address):
            return kind, text
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        inner = _classify(embedded) if embedded is not None else None
        if inner is not None:
            return "embedded", f"an IPv6 address embedding {embedded}, {inner[1]}"
    if (
        not address.is_global
        or address.is_reserved
        or any(address in network for network in EXTRA_RESERVED)
    ):
        return "reserved", "a reserved or non-routable address"
    return None


# -- the policy -------------------------------------------------------------------------------


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6] or [IPv6]:port")
        return inside, _port(rest[1:]) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port)
    return text, None  # no port, or a bare IPv6 address / network


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= _MAX_PORT:
        raise ValueError(f"invalid port {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One ``egress.allow`` entry: a name, ``*.`` suffix, address or CIDR, optional port."""

    text: str
    port: int | None = None
    network: IPNetwork | None = None
    name: str | None = None
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """Parse ``host``, ``*.suffix``, ``ip``, ``cidr``, ``[v6]``, each optionally ``:port``."""
        raw = text.strip()
        try:
            host, port = _split_port(raw)
            if "/" in host:
                network = ipaddress.ip_network(host, strict=False)
                if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:  # noqa: PLR2004
                    mapped = network.network_address.ipv4_mapped
                    if mapped is not None:
                        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
                return cls(raw, port, network=network)
            wildcard = host.startswith("*.")
            parsed = parse_host(host[2:] if wildcard else host)
        except ValueError as err:
            raise EgressPolicyError(f"allow entry {raw!r}: {err}") from None
        if isinstance(parsed, str):
            return cls(raw, port, name=parsed, wildcard=wildcard)
        if wildcard:
            raise EgressPolicyError(f"allow entry {raw!r}: a wildcard needs a name, not an address")
        return cls(raw, port, network=ipaddress.ip_network(_canonical(parsed)))

    def covers_port(self, port: int) -> bool:
        """Whether the entry allows this port (an entry without a port allows every port)."""
        return self.port is None or self.port == port

    def matches_name(self, host: str) -> bool:
        """Whether a normalised host name is this entry's name (or below it, for ``*.``)."""
        if self.name is None:
            return False
        return host.endswith("." + self.name) if self.wildcard else host == self.name

    def matches_address(self, address: IPAddress) -> bool:
        """Whether a canonical address is inside this entry's address or network."""
        return self.network is not None and address in self.network

    def names_address(self, address: IPAddress) -> bool:
        """Whether this entry is exactly this one address (what opens a metadata address)."""
        return (
            self.network is not None and self.network.num_addresses == 1 and address in self.network
        )


def _entries(values: Iterable[str]) -> tuple[AllowEntry, ...]:
    return tuple(AllowEntry.parse(value) for value in values if value.strip())


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """A run's egress policy; hashable, so one connection pool serves each distinct policy.

    ``allow`` is None without an allow list (public destinations open); otherwise only the
    destinations it, or ``extra``, lists are open. ``extra`` are the worker's own entries
    (``AMOS_EGRESS_ALLOW``): they open what they name in every run but never turn the
    allow list on by themselves.
    """

    allow: tuple[AllowEntry, ...] | None = None
    extra: tuple[AllowEntry, ...] = ()
    allow_private: bool = False
    internal_ports: frozenset[int] = frozenset()

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        extra_allow: Iterable[str] = (),
        internal_ports: frozenset[int] = frozenset(),
    ) -> EgressPolicy:
        """Build the policy from an Effective Config (its ``egress`` key, if any)."""
        section = config.get("egress")
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise EgressPolicyError("'egress' must be an object")
        unknown = sorted(set(section) - {"allow", "allow_private"})
        if unknown:
            raise EgressPolicyError(f"unknown key(s) in 'egress': {', '.join(map(str, unknown))}")
        allow_private = section.get("allow_private", False)
        if not isinstance(allow_private, bool):
            raise EgressPolicyError("'egress.allow_private' must be true or false")
        listed = section.get("allow")
        allow: tuple[AllowEntry, ...] | None = None
        if listed is not None:
            if isinstance(listed, str | bytes) or not isinstance(listed, Sequence):
                raise EgressPolicyError("'egress.allow' must be a list of strings")
            if not all(isinstance(item, str) for item in listed):
                raise EgressPolicyError("'egress.allow' must be a list of strings")
            allow = _entries(listed)
        return cls(
            allow=allow,
            extra=_entries(extra_allow),
            allow_private=allow_private,
            internal_ports=internal_ports,
        )

    @property
    def entries(self) -> tuple[AllowEntry, ...]:
        """Every entry that opens a destination: the run's list, then the worker's."""
        return (self.allow or ()) + self.extra


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(ip: IPAddress | str, port: int, host: str, policy: EgressPolicy) -> None:
    """Refuse connecting to ``ip:port`` (reached as ``host``) unless the policy opens it.

    ``host`` is the name the caller asked for (the IP itself when it spelled out an
    address); name entries match it, address entries match ``ip``.
    """
    shown = _shown(host, port)
    try:
        address = _canonical(ip)
    except ValueError:
        raise EgressDeniedError(shown, f"{ip!r} is not an IP address") from None
    name = host.lower().removesuffix(".")
    by_address = [e for e in policy.entries if e.matches_address(address) and e.covers_port(port)]
    by_name = [e for e in policy.entries if e.matches_name(name) and e.covers_port(port)]
    kind = _classify(address)
    if kind is not None:
        label, text = kind
        what = (
            f"{address} is {text}" if str(address) == host else f"its address {address} is {text}"
        )
        if label == "metadata":
            if not any(e.names_address(address) for e in by_address):
                raise EgressDeniedError(
                    shown,
                    f"{what}; only an egress.allow entry naming exactly this address opens it",
                )
        elif not by_address and not (label == "private" and policy.allow_private):
            entry = _shown(str(address), port)
            also = " or egress.allow_private" if label == "private" else ""
            raise EgressDeniedError(
                shown, f"{what}; only an egress.allow entry naming it ('{entry}'){also} opens it"
            )
    if policy.allow is not None and not (by_address or by_name):
        listed = "it is" if str(address) == host else f"it ({address}) is"
        raise EgressDeniedError(shown, f"{listed} not in the egress allow list")
    if port in policy.internal_ports and not any(e.port == port for e in by_address + by_name):
        raise EgressDeniedError(
            shown,
            f"port {port} is an internal port of the platform (Temporal, NATS, API);"
            " only an egress.allow entry with this port opens it",
        )


def _check_name(name: str, port: int, policy: EgressPolicy) -> None:
    """What can be decided about a name before resolving it: is it listed at all?"""
    if policy.allow is None:
        return
    if any(e.matches_name(name) and e.covers_port(port) for e in policy.entries):
        return
    if any(e.network is not None and e.covers_port(port) for e in policy.entries):
        return  # an address entry may still match what the name resolves to
    raise EgressDeniedError(_shown(name, port), "it is not in the egress allow list")


def check_url(url: str, policy: EgressPolicy) -> None:
    """Refuse a URL the policy cannot allow: another scheme, a malformed or closed host.

    Names are checked again against their resolved addresses when connecting.
    """
    if "\\" in url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):  # noqa: PLR2004
        raise EgressDeniedError("the URL", "it contains whitespace, control characters or '\\'")
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise EgressDeniedError("the URL", f"it is malformed: {err}") from None
    scheme = parts.scheme.lower()
    authority = parts.netloc.rpartition("@")[2]
    if scheme not in SCHEMES:
        shown = scheme[:20] or "none"
        raise EgressDeniedError(
            authority or "the URL", f"scheme {shown!r} is not allowed; only http and https"
        )
    try:
        host_text, port = (
            _split_port(authority) if authority.startswith("[") else _host_port(authority)
        )
        host = parse_host(host_text)
    except ValueError as err:
        raise EgressDeniedError(authority or "the URL", f"malformed host: {err}") from None
    port = port or SCHEMES[scheme]
    if isinstance(host, str):
        _check_name(host, port, policy)
    else:
        check_address(host, port, host_text, policy)


def _host_port(authority: str) -> tuple[str, int | None]:
    host, colon, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if colon and not port:
        return host, None  # "host:" means the default port
    return host, _port(port) if colon else None


# -- connecting -------------------------------------------------------------------------------


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def resolve(
    host: str, port: int, policy: EgressPolicy, *, resolver: Resolver = _getaddrinfo
) -> list[str]:
    """Resolve ``host`` once, check every address, and return the ones to connect to.

    One refused address refuses the host: a name that resolves to a public and a loopback
    address is not trusted with either.
    """
    try:
        parsed = parse_host(host)
    except ValueError as err:
        raise EgressDeniedError(host, f"malformed host: {err}") from None
    if isinstance(parsed, str):
        _check_name(parsed, port, policy)
        try:
            found = await resolver(parsed, port)
        except OSError as err:
            raise httpcore.ConnectError(f"cannot resolve {parsed}: {err}") from None
        if not found:
            raise httpcore.ConnectError(f"{parsed} resolves to no address")
        name = parsed
    else:
        found, name = [str(parsed)], host
    addresses: list[str] = []
    for text in dict.fromkeys(found):
        address = ipaddress.ip_address(text)
        check_address(address, port, name, policy)
        canonical = _canonical(address)
        # Keep a zone id (needed to reach a link-local address someone explicitly opened).
        addresses.append(text if canonical.version == 6 else str(canonical))  # noqa: PLR2004
    return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses the policy opened."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port, self._policy, resolver=self._resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err
        assert failure is not None  # resolve returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        del timeout, socket_options
        raise EgressDeniedError(path, "unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a connection step that resolves, checks and pins the address.

    No proxy and no environment (``trust_env``) are used: a proxy would connect instead of
    us, and the policy could not see the destination.
    """

    def __init__(self, policy: EgressPolicy, *, resolver: Resolver = _getaddrinfo) -> None:
        super().__init__(trust_env=False, limits=LIMITS)
        self.policy = policy
        # httpx builds its pool with no way to pass a network backend; build it again with
        # the guarded one and httpx's default settings.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=_GuardedBackend(policy, resolver),
        )


def guarded_client(
    policy: EgressPolicy, *, max_redirects: int = MAX_REDIRECTS, resolver: Resolver = _getaddrinfo
) -> httpx.AsyncClient:
    """An httpx client whose every request, and every redirect hop, obeys ``policy``."""

    async def check_hop(request: httpx.Request) -> None:
        check_url(str(request.url), policy)

    return httpx.AsyncClient(
        transport=EgressTransport(policy, resolver=resolver),
        follow_redirects=False,
        max_redirects=max_redirects,
        trust_env=False,
        event_hooks={"request": [check_hop]},
    )


# -- a forward proxy for clients that take no transport -------------------------------------

_HEAD_LIMIT = 64 * 1024
_RELAY_CHUNK = 64 * 1024
_DROPPED_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization"}
)
#: Marks the proxy's own answers: ``refused`` (the policy) or ``failed`` (the destination).
ANSWER_HEADER = "x-amos-egress"


class _ProxyAnswer(Exception):  # noqa: N818 - an answer, not a failure of ours
    """A response the proxy gives instead of connecting (a refusal or a failure upstream)."""

    def __init__(self, status: str, text: str, *, refused: bool = False) -> None:
        self.status, self.text = status, text
        self.kind = "refused" if refused else "failed"
        super().__init__(text)


class EgressProxy:
    """A forward HTTP proxy on 127.0.0.1 that connects only where ``policy`` opens.

    It speaks ``CONNECT host:port`` (HTTPS, WebSockets, anything tunnelled) and absolute-form
    ``GET http://host/…`` requests, one per client connection. Each destination is resolved
    once, every address checked, and the connection made to the checked address; a refusal is
    a ``403`` carrying the reason and ``x-amos-egress: refused``, sent before anything
    reaches the destination (a destination that cannot be reached: ``502``/``504`` and
    ``x-amos-egress: failed``). No credentials are asked: it opens nothing the host
    could not reach itself, and it lives as long as the job that started it.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = _getaddrinfo,
        connect_timeout: float = 30.0,
    ) -> None:
        self.policy = policy
        self._resolver = resolver
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The proxy's address, ``http://127.0.0.1:<port>`` (once started)."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> Self:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        return self

    async def aclose(self) -> None:
        """Stop listening and cut every open tunnel."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing to answer
        except asyncio.CancelledError:
            pass  # aclose cut the tunnel; asyncio would log a cancelled connection task
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line, _, headers = head.partition("\r\n")
        try:
            method, target, version = line.split(" ")
            if method == "CONNECT":
                host, port = _authority(target)
                upstream = await self._open(host, port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                host, port, request = _forwarded(method, target, version, headers, self.policy)
                upstream = await self._open(host, port)
                upstream[1].write(request)
        except _ProxyAnswer as answer:
            await _answer(writer, answer)
            return
        except ValueError as err:
            await _answer(writer, _ProxyAnswer("400 Bad Request", f"bad proxy request: {err}"))
            return
        await _relay(reader, writer, *upstream)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Resolve once, check every address, connect to a checked one."""
        failure: OSError | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                addresses = await resolve(host, port, self.policy, resolver=self._resolver)
                for address in addresses:
                    try:
                        return await asyncio.open_connection(address, port)
                    except OSError as err:
                        failure = err
        except EgressDeniedError as err:
            raise _ProxyAnswer("403 Forbidden", str(err), refused=True) from None
        except httpcore.ConnectError as err:
            raise _ProxyAnswer("502 Bad Gateway", str(err)) from None
        except TimeoutError:
            raise _ProxyAnswer("504 Gateway Timeout", f"connecting to {host} timed out") from None
        raise _ProxyAnswer("502 Bad Gateway", f"cannot connect to {host}: {failure}")


def _authority(target: str) -> tuple[str, int]:
    """``host:port`` of a CONNECT request (``[v6]:port`` for IPv6); the port is required."""
    host, port = _split_port(target) if target.startswith("[") else _host_port(target)
    if port is None:
        raise ValueError(f"CONNECT {target[:100]!r} names no port")
    return host, port


def _forwarded(
    method: str, target: str, version: str, headers: str, policy: EgressPolicy
) -> tuple[str, int, bytes]:
    """Host, port and the origin-form request to send for an absolute-form proxy request."""
    if not version.startswith("HTTP/1.") or not target.lower().startswith("http://"):
        raise ValueError("only CONNECT and absolute http:// requests are proxied")
    try:
        check_url(target, policy)
    except EgressDeniedError as err:
        raise _ProxyAnswer("403 Forbidden", str(err), refused=True) from None
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kept = [
        h
        for h in headers.split("\r\n")
        if h and h.partition(":")[0].strip().lower() not in _DROPPED_HEADERS
    ]
    # One request per connection: a client may send its next request for another host.
    request = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""])
    return parts.hostname or "", parts.port or SCHEMES["http"], request.encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, answer: _ProxyAnswer) -> None:
    body = answer.text.encode()
    writer.write(
        f"HTTP/1.1 {answer.status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"{ANSWER_HEADER}: {answer.kind}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until the destination is done; the client's end of input half-closes."""
    sending = asyncio.ensure_future(_copy(client_reader, upstream_writer))
    try:
        await _copy(upstream_reader, client_writer)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        upstream_writer.close()


# -- where a policy comes from -------------------------------------------------------------------


def _port_of(address: str | None) -> set[int]:
    ports: set[int] = set()
    for item in (address or "").split(","):
        text = item.strip()
        if not text:
            continue
        try:
            port = urlsplit(text if "://" in text else f"//{text}").port
        except ValueError:
            continue
        if port:
            ports.add(port)
    return ports


def internal_ports(*addresses: str) -> frozenset[int]:
    """The platform's own ports, as far as this worker can see them.

    The Temporal frontend (``AMOS_TEMPORAL_ADDRESS`` or the embedded server of the home),
    NATS (``AMOS_NATS_URL`` or the embedded server), the API (``AMOS_API_PORT``), the runner
    endpoint (``AMOS_RUNNER_PORT``), their
    well-known defaults, and the ports of any ``addresses`` the caller knows (such as the
    Temporal address its client is connected to).
    """
    engine, bus, api = EngineSettings(), BusSettings(), ApiSettings()
    temporal = engine.temporal_address or _state_value(engine.home / "temporal.json", "address")
    nats = bus.nats_url or _state_value(bus.home / "nats.json", "url")
    runner_port = RunnerSettings().port
    ports = set(DEFAULT_INTERNAL_PORTS) | {api.port} | ({runner_port} if runner_port else set())
    for address in (temporal, nats, *addresses):
        ports |= _port_of(address)
    return frozenset(ports)


def _state_value(path: Path, key: str) -> str | None:
    state = live_state(path)
    value = state.get(key) if state else None
    return str(value) if value else None


def worker_allow() -> tuple[str, ...]:
    """The worker's own allow entries (``AMOS_EGRESS_ALLOW``, comma-separated)."""
    return tuple(v.strip() for v in EngineSettings().egress_allow.split(",") if v.strip())


async def run_policy(ctx: ActionContext) -> EgressPolicy:
    """The egress policy of the run an action belongs to, merged with the worker's entries."""
    config = await ctx.run_config()
    return EgressPolicy.from_config(
        config, extra_allow=worker_allow(), internal_ports=internal_ports(*_temporal_target())
    )


def _temporal_target() -> tuple[str, ...]:
    """The Temporal address this activity's worker is connected to, when in an activity."""
    try:
        return (activity.client().service_client.config.target_host,)
    except RuntimeError:
        return ()
