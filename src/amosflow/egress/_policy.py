"""The egress policy: allow entries, the policy of a run, and the checks of an address or URL."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from amosflow.egress._addresses import (
    SCHEMES,
    IPAddress,
    IPNetwork,
    _canonical,
    _classify,
    _port,
    _split_port,
    parse_host,
)
from amosflow.errors import ActionError


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
