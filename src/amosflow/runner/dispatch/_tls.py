"""Mutual TLS for the runner endpoint: who is on the other end of this connection.

uvicorn verifies the client certificate against the platform CA during the handshake but
does not hand it to the application. This protocol class copies the peer certificate (DER)
into the connection's ASGI ``state``, so the endpoint can map it to a runner and check,
on every request, that the runner is still enrolled and not revoked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    import asyncio

#: Key of the peer certificate (DER bytes, or None) in ``request.state``.
PEER_CERT = "tls_peer_cert"


class PeerCertProtocol(H11Protocol):
    """HTTP/1.1 over TLS that exposes the verified client certificate to the app."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Record the peer certificate of this connection in its requests' state."""
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        # A fresh dict per connection: the server's own state stays untouched.
        self.app_state = {**self.app_state, PEER_CERT: der}
