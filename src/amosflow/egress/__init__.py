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

from amosflow.egress._addresses import parse_host
from amosflow.egress._policy import (
    AllowEntry,
    EgressDeniedError,
    EgressPolicy,
    EgressPolicyError,
    check_address,
    check_url,
)
from amosflow.egress._ports import internal_ports, run_policy, worker_allow
from amosflow.egress._proxy import ANSWER_HEADER, EgressProxy
from amosflow.egress._transport import (
    MAX_REDIRECTS,
    EgressTransport,
    Resolver,
    guarded_client,
    resolve,
)

__all__ = [
    "ANSWER_HEADER",
    "MAX_REDIRECTS",
    "AllowEntry",
    "EgressDeniedError",
    "EgressPolicy",
    "EgressPolicyError",
    "EgressProxy",
    "EgressTransport",
    "Resolver",
    "check_address",
    "check_url",
    "guarded_client",
    "internal_ports",
    "parse_host",
    "resolve",
    "run_policy",
    "worker_allow",
]
