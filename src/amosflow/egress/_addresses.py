"""Host and address parsing: every spelling of an address, and which kind each address is."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import unquote

import idna

if TYPE_CHECKING:
    from collections.abc import Callable


IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


SCHEMES = {"http": 80, "https": 443}


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
