"""SIEM export: CEF and syslog rendering, and shipping to real receivers on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

import amosflow
from amosflow import audit
from amosflow.dsl import canonical_json
from amosflow.errors import AuditError
from amosflow.store import Store
from tests.audit.chain import build
from tests.audit.syslog import (
    TcpReceiver,
    UdpReceiver,
    free_port,
    parse_cef,
    parse_syslog,
    until,
)

NASTY = "flow:a|b=c\nd\\e\r"


def _record(**changes: object) -> audit.AuditRecord:
    fields: dict[str, object] = {
        "seq": 7,
        "at": datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC),
        "actor": "user:ann",
        "action": "flows.create",
        "resource": "flow:invoice",
        "folder": "finance",
        "outcome": "ok",
        "details": {"n": 1},
        "prev_hash": "a" * 64,
        "hash": "b" * 64,
    }
    return audit.AuditRecord.model_validate(fields | changes)


def _settings(
    settings: audit.AuditSettings, url: str | None, allow: list[str] | None = None, **more: object
) -> audit.AuditSettings:
    return settings.model_copy(
        update={
            "audit_siem_url": url,
            "audit_siem_allow": ["127.0.0.1"] if allow is None else allow,
            **more,
        }
    )


def _nasty(store: Store) -> None:
    with store.session() as session:
        audit.append(
            session,
            actor="user:x=y",
            action="flows.delete",
            resource=NASTY,
            folder="fin|ance",
            outcome="denied",
            details={"why": "a=b|c\nd"},
        )


def _cef_seqs(messages: list[bytes]) -> list[int]:
    return [int(parse_cef(parse_syslog(m).message).extension["externalId"]) for m in messages]


@contextmanager
def forwarding(forwarder: audit.SiemForwarder) -> Iterator[threading.Event]:
    """Run ``run_forever`` in a thread; stop it and wait for it on the way out."""
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run_forever, args=(stop,))
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


@pytest.fixture
def tcp() -> Iterator[TcpReceiver]:
    receiver = TcpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def udp() -> Iterator[UdpReceiver]:
    receiver = UdpReceiver()
    yield receiver
    receiver.stop()


# -- rendering ----------------------------------------------------------------------------------


def test_cef_carries_every_field_with_escaping_undone_by_a_parser() -> None:
    """`|`, `=`, `\\` and line breaks in values survive a CEF parser; the line stays one line."""
    record = _record(actor="user:x=y", resource=NASTY, folder="fin|ance", details={"why": "a=b\nc"})
    line = audit.to_cef(record)
    assert line.startswith(f"CEF:0|AMOS|AMOS FLOW|{amosflow.__version__}|flows.create|")
    assert "\n" not in line
    assert "\r" not in line
    parsed = parse_cef(line)
    assert parsed.header == [
        "CEF:0", "AMOS", "AMOS FLOW", amosflow.__version__, "flows.create", "flows.create ok", "3",
    ]  # fmt: skip
    assert parsed.extension == {
        "rt": str(int(record.at.timestamp()) * 1000 + record.at.microsecond // 1000),
        "suser": "user:x=y",
        "act": "flows.create",
        "outcome": "ok",
        "cs1Label": "resource",
        "cs1": NASTY,
        "cs2Label": "folder",
        "cs2": "fin|ance",
        "cs3Label": "hash",
        "cs3": "b" * 64,
        "cs4Label": "details",
        "cs4": '{"why":"a=b\\nc"}',
        "externalId": "7",
    }
    assert "cs1=flow:a|b\\=c\\nd\\\\e\\r " in line  # the exact escaping, not just a round trip


def test_cef_header_fields_escape_pipes_and_backslashes() -> None:
    """A header field with `|` or `\\` is escaped, so the header still splits into seven."""
    line = audit.to_cef(_record(action="weird|act\\ion"))
    assert "|weird\\|act\\\\ion|" in line
    assert parse_cef(line).header[4] == "weird|act\\ion"


def test_cef_severity_ranks_denied_and_error_above_ok() -> None:
    """A refusal and a failure are more severe than a success."""
    severity = {o: int(parse_cef(audit.to_cef(_record(outcome=o))).header[6]) for o in ("ok", "denied", "error")}  # fmt: skip
    assert severity["denied"] > severity["ok"]
    assert severity["error"] > severity["ok"]


def test_syslog_lines_are_rfc_5424() -> None:
    """PRI, version, timestamp, host, app, procid, msgid, no structured data, then the message."""
    raw = audit.to_syslog(
        "hello world", hostname="node one", severity=4, at=_record().at, procid="42"
    )
    assert raw == b"<108>1 2025-03-04T05:06:07.891000Z node_one amosflow 42 audit - hello world"
    message = parse_syslog(raw)
    assert (message.facility, message.severity, message.message) == (13, 4, "hello world")
    with pytest.raises(ValueError, match="severity"):
        audit.to_syslog("x", hostname="h", severity=8)


def test_export_cef_writes_one_line_per_record(store: Store) -> None:
    """`export_cef` writes the same CEF lines, oldest first, honouring filters."""
    build(store, 4)
    _nasty(store)
    out = io.StringIO()
    with store.session(read_only=True) as session:
        written = audit.export_cef(session, out)
        denied = io.StringIO()
        audit.export_cef(session, denied, action="flows.delete")
    lines = out.getvalue().splitlines()
    assert written == len(lines) == 5
    assert [int(parse_cef(line).extension["externalId"]) for line in lines] == [1, 2, 3, 4, 5]
    assert parse_cef(lines[-1]).extension["cs1"] == NASTY
    assert len(denied.getvalue().splitlines()) == 1


# -- shipping ----------------------------------------------------------------------------------


def test_records_arrive_over_tcp_as_valid_cef(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver
) -> None:
    """Every record, including one full of special characters, arrives as RFC 5424 + CEF."""
    build(store, 3)
    _nasty(store)
    forwarder = audit.SiemForwarder(store, _settings(settings, f"tcp://127.0.0.1:{tcp.port}"))
    assert forwarder.ship_pending() == 4
    forwarder.close()
    messages = tcp.wait_for(4)
    assert _cef_seqs(messages) == [1, 2, 3, 4]
    last = parse_syslog(messages[-1])
    assert (last.facility, last.severity, last.app_name) == (13, 4, "amosflow")
    cef = parse_cef(last.message)
    assert cef.header[4:] == ["flows.delete", "flows.delete denied", "8"]
    assert (cef.extension["cs1"], cef.extension["cs2"]) == (NASTY, "fin|ance")
    assert cef.extension["suser"] == "user:x=y"
    assert forwarder.cursor() == 4
    assert settings.siem_cursor_path.read_text() == "4\n"


def test_records_arrive_over_udp_as_json_that_rehashes(
    store: Store, settings: audit.AuditSettings, udp: UdpReceiver
) -> None:
    """In jsonl format each datagram carries the canonical record, whose hash checks out."""
    build(store, 3)
    _nasty(store)
    configured = _settings(settings, f"udp://127.0.0.1:{udp.port}", audit_siem_format="jsonl")
    forwarder = audit.SiemForwarder(store, configured)
    assert forwarder.ship_pending() == 4
    forwarder.close()
    messages = udp.wait_for(4)
    records = [json.loads(parse_syslog(m).message) for m in messages]
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    for record in records:
        claimed = record.pop("hash")
        assert hashlib.sha256(canonical_json(record)).hexdigest() == claimed
    assert records[-1]["resource"] == NASTY


def test_new_records_are_shipped_while_running(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver
) -> None:
    """`run_forever` picks up records appended after it started, in batches, in order."""
    forwarder = audit.SiemForwarder(
        store, _settings(settings, f"tcp://127.0.0.1:{tcp.port}"), batch_size=4, poll_seconds=0.02
    )
    with forwarding(forwarder):
        build(store, 3)
        tcp.wait_for(3)
        build(store, 7)
        tcp.wait_for(10)
    assert _cef_seqs(tcp.messages) == list(range(1, 11))
    assert forwarder.cursor() == 10


def test_a_restart_resumes_after_the_cursor_without_loss_or_repeats(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver
) -> None:
    """A new forwarder (a restarted process) reads the cursor file and sends only what is new."""
    configured = _settings(settings, f"tcp://127.0.0.1:{tcp.port}")
    build(store, 5)
    first = audit.SiemForwarder(store, configured, batch_size=2)
    assert first.ship_pending() == 5
    first.close()
    tcp.wait_for(5)
    build(store, 3)
    second = audit.SiemForwarder(store, configured, batch_size=2)
    assert second.cursor() == 5
    assert second.ship_pending() == 3
    second.close()
    assert _cef_seqs(tcp.wait_for(8)) == list(range(1, 9))
    assert second.ship_pending() == 0


def test_a_receiver_that_is_down_then_up_gets_everything(
    store: Store, settings: audit.AuditSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """While nothing listens the cursor stays put; once a receiver starts, every record arrives."""
    port = free_port()
    forwarder = audit.SiemForwarder(
        store,
        _settings(settings, f"tcp://127.0.0.1:{port}"),
        poll_seconds=0.02,
        backoff_seconds=0.02,
        max_backoff_seconds=0.1,
    )
    build(store, 4)
    with caplog.at_level(logging.WARNING), forwarding(forwarder):
        until(lambda: "SIEM shipping failed" in caplog.text, what="a failed attempt")
        assert not settings.siem_cursor_path.exists()
        receiver = TcpReceiver(port)
        try:
            receiver.wait_for(4)
            build(store, 2)
            receiver.wait_for(6)
        finally:
            receiver.stop()
    assert sorted(set(_cef_seqs(receiver.messages))) == list(range(1, 7))
    assert forwarder.cursor() == 6


def test_a_receiver_restarting_midway_loses_nothing(
    store: Store, settings: audit.AuditSettings
) -> None:
    """The receiver drops the connection and comes back: records sent after that all arrive."""
    before = TcpReceiver()
    port = before.port
    forwarder = audit.SiemForwarder(
        store,
        _settings(settings, f"tcp://127.0.0.1:{port}"),
        poll_seconds=0.02,
        backoff_seconds=0.02,
        max_backoff_seconds=0.1,
    )
    with forwarding(forwarder):
        build(store, 3)
        before.wait_for(3)
        before.stop()
        build(store, 3)
        after = TcpReceiver(port)
        try:
            after.wait_for(3)
        finally:
            after.stop()
    assert set(_cef_seqs(after.messages)) >= {4, 5, 6}
    assert forwarder.cursor() == 6


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("tcp://127.0.0.1:{port}", []),
        ("tcp://127.0.0.1:{port}", ["localhost"]),
        ("udp://10.1.2.3:{port}", ["127.0.0.1"]),
    ],
)
def test_a_url_whose_host_is_not_allowed_is_refused(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver, url: str, allow: list[str]
) -> None:
    """The egress gate: a destination must be named in the allow list too, or nothing starts."""
    configured = _settings(settings, url.format(port=tcp.port), allow)
    with pytest.raises(AuditError, match="not in AMOS_AUDIT_SIEM_ALLOW"):
        audit.SiemForwarder(store, configured)
    assert tcp.connections == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:514", "tcp://127.0.0.1:99999", "tcp://:514"])
def test_a_malformed_url_is_refused(store: Store, settings: audit.AuditSettings, url: str) -> None:
    """Only tcp://host:port and udp://host:port are destinations."""
    with pytest.raises(AuditError, match="AMOS_AUDIT_SIEM_URL"):
        audit.SiemForwarder(store, _settings(settings, url))


def test_allowed_hosts_match_however_they_are_written(
    store: Store, settings: audit.AuditSettings
) -> None:
    """Case and IPv6 spelling do not matter; the default port is 514."""
    configured = _settings(settings, "udp://[0:0::1]", ["::1"])
    assert str(audit.SiemForwarder(store, configured).destination) == "udp://[0:0::1]:514"
    named = _settings(settings, "tcp://SIEM.example:6514", ["siem.example"])
    assert str(audit.SiemForwarder(store, named).destination) == "tcp://siem.example:6514"


def test_with_no_url_nothing_is_ever_sent(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver, udp: UdpReceiver
) -> None:
    """Off by default: no socket is opened, no cursor written, even with hosts allowed."""
    build(store, 3)
    assert audit.AuditSettings(home=settings.home).audit_siem_url is None
    forwarder = audit.SiemForwarder(store, _settings(settings, None))
    assert not forwarder.enabled
    assert forwarder.ship_batch() == 0
    assert forwarder.ship_pending() == 0
    stop = threading.Event()
    forwarder.run_forever(stop)  # returns at once
    assert (tcp.connections, tcp.messages, udp.messages) == (0, [], [])
    assert not settings.siem_cursor_path.exists()


def test_a_corrupt_cursor_stops_the_forwarder_instead_of_resending_everything(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver
) -> None:
    """A cursor file that is not a seq is an error at start, not a silent restart from 0."""
    cursor: Path = settings.siem_cursor_path
    cursor.parent.mkdir(parents=True)
    cursor.write_text("garbage\n")
    forwarder = audit.SiemForwarder(store, _settings(settings, f"tcp://127.0.0.1:{tcp.port}"))
    with pytest.raises(AuditError, match="does not hold a seq"):
        forwarder.run_forever(threading.Event())
    assert tcp.messages == []


def test_a_long_record_is_framed_by_octet_count(
    store: Store, settings: audit.AuditSettings, tcp: TcpReceiver
) -> None:
    """A message longer than any socket read still arrives whole."""
    with store.session() as session:
        audit.append(
            session,
            actor="user:a",
            action="flows.create",
            resource="flow:big",
            details={"blob": "x\n" * 100_000},
        )
    forwarder = audit.SiemForwarder(store, _settings(settings, f"tcp://127.0.0.1:{tcp.port}"))
    forwarder.ship_pending()
    forwarder.close()
    (message,) = tcp.wait_for(1)
    details = json.loads(parse_cef(parse_syslog(message).message).extension["cs4"])
    assert details == {"blob": "x\n" * 100_000}


def test_the_allow_list_reads_commas_or_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AMOS_AUDIT_SIEM_ALLOW takes `a,b` or a JSON list."""
    monkeypatch.setenv("AMOS_AUDIT_SIEM_ALLOW", "siem.example, 10.0.0.5")
    assert audit.AuditSettings().audit_siem_allow == ["siem.example", "10.0.0.5"]
    monkeypatch.setenv("AMOS_AUDIT_SIEM_ALLOW", '["::1"]')
    assert audit.AuditSettings().audit_siem_allow == ["::1"]
