"""The harness's proxy itself: a cut must end each connection for the server behind it.

A cut once left the server's end of an idle connection open for good (the socket was closed
while a pump thread was blocked reading it, which defers the close), so a long battery on
PostgreSQL piled up idle backends until the node could open no connection at all.
"""

from __future__ import annotations

import socket
import threading

from tests.faults.harness import Faults, TcpProxy


def test_a_cut_ends_an_idle_connection_for_the_server_behind_the_proxy() -> None:
    """The upstream server's read of an idle proxied connection ends once the link is cut."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        upstream = f"127.0.0.1:{listener.getsockname()[1]}"
        proxy = TcpProxy(upstream, Faults(seed=0))
        host, _, port = proxy.address.rpartition(":")
        client = socket.create_connection((host, int(port)), timeout=5)
        listener.settimeout(5)
        served, _ = listener.accept()
        served.settimeout(10)  # a bound on the test, far above the few ms a cut takes
        client.sendall(b"ping")
        assert served.recv(4) == b"ping"
        ended = threading.Event()
        outcome: list[bytes | str] = []

        def read() -> None:
            try:
                outcome.append(served.recv(1))
            except ConnectionResetError:
                outcome.append("reset")
            except TimeoutError:
                outcome.append("still open")
            ended.set()

        reader = threading.Thread(target=read)
        reader.start()
        proxy.cut()
        reader.join(timeout=15)
        proxy.close()
        client.close()
        served.close()
    assert ended.is_set()
    assert outcome in ([b""], ["reset"]), outcome
