"""Ship the audit trail to a SIEM: CEF or canonical JSON over syslog, egress-gated, off by default.

Nothing is sent unless ``AMOS_AUDIT_SIEM_URL`` names a receiver *and* its host is listed in
``AMOS_AUDIT_SIEM_ALLOW``: an air-gapped install stays air-gapped until someone names the
destination twice. ``SiemForwarder`` ships every record after a cursor kept in a small file,
advancing it only after a batch was handed to the receiver, so a restart resends rather than
skips (at-least-once).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import select
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import urlsplit

from sqlalchemy import select as sql_select
from sqlalchemy.exc import SQLAlchemyError

import amosflow
from amosflow.audit._canonical import canonical_value, stamp
from amosflow.audit._chainer import flush_links
from amosflow.audit._query import export_lines, json_line
from amosflow.audit._records import AuditRecord
from amosflow.errors import AuditError
from amosflow.store import AuditRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    import threading
    from pathlib import Path
    from typing import Any, TextIO

    from sqlalchemy.orm import Session

    from amosflow.config import AuditSettings
    from amosflow.store import Store

_log = logging.getLogger(__name__)

CEF_VENDOR = "AMOS"
CEF_PRODUCT = "AMOS FLOW"
#: RFC 5424 facility 13, "log audit".
FACILITY_LOG_AUDIT = 13
SYSLOG_PORT = 514
#: CEF severity (0-10): refusals and failures rank above routine success.
_CEF_SEVERITY = {"ok": 3, "error": 6, "denied": 8}
#: RFC 5424 severity (0 emergency … 7 debug): informational, error, warning.
_SYSLOG_SEVERITY = {"ok": 6, "error": 3, "denied": 4}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_SEVERITY = 7
_MAX_FACILITY = 23
#: A UDP datagram larger than this is truncated (RFC 5426 lets receivers truncate anyway).
UDP_MAX_BYTES = 65_000
Transport = Literal["tcp", "udp"]


def _cef_header(value: str) -> str:
    """Escape a CEF header field (backslash and pipe); a header may not span lines."""
    flat = value.replace("\r", " ").replace("\n", " ")
    return flat.replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: str) -> str:
    """Escape a CEF extension value: backslash, ``=`` and line breaks (a pipe needs none)."""
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def to_cef(record: AuditRecord) -> str:
    """Render one record as an ArcSight CEF:0 line (without a syslog header).

    The signature id is the action and the severity ranks ``denied`` and ``error`` above
    ``ok``; the extension carries rt (epoch ms), suser, act, outcome, the resource, folder,
    hash and canonical details as cs1..cs4, and the seq as externalId.
    """
    millis = (record.at - _EPOCH) // timedelta(milliseconds=1)
    header = [
        CEF_VENDOR,
        CEF_PRODUCT,
        amosflow.__version__,
        record.action,
        f"{record.action} {record.outcome}",
        str(_CEF_SEVERITY[record.outcome]),
    ]
    extension = [
        ("rt", str(millis)),
        ("suser", record.actor),
        ("act", record.action),
        ("outcome", record.outcome),
        ("cs1Label", "resource"),
        ("cs1", record.resource),
        ("cs2Label", "folder"),
        ("cs2", record.folder),
        ("cs3Label", "hash"),
        ("cs3", record.hash),
        ("cs4Label", "details"),
        ("cs4", canonical_value(record.details)),
        ("externalId", str(record.seq)),
    ]
    fields = "|".join(_cef_header(field) for field in header)
    return f"CEF:0|{fields}|" + " ".join(f"{key}={_cef_value(value)}" for key, value in extension)


def _syslog_field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII, no spaces, ``limit`` long; ``-`` if empty."""
    clean = "".join(char if "!" <= char <= "~" else "_" for char in value)[:limit]
    return clean or "-"


def to_syslog(
    message: str,
    *,
    hostname: str,
    app_name: str = "amosflow",
    severity: int,
    facility: int = FACILITY_LOG_AUDIT,
    at: datetime | None = None,
    procid: str | None = None,
    msgid: str = "audit",
) -> bytes:
    """Wrap ``message`` in an RFC 5424 syslog line (no structured data, no trailing newline).

    ``severity`` is the syslog one (0 emergency … 7 debug), ``at`` the event time (now when
    omitted); header fields are reduced to printable ASCII and cut to their RFC lengths.
    """
    if not 0 <= severity <= _MAX_SEVERITY:
        raise ValueError(f"syslog severity {severity} is not 0..7")
    if not 0 <= facility <= _MAX_FACILITY:
        raise ValueError(f"syslog facility {facility} is not 0..23")
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            stamp(at or utcnow()),
            _syslog_field(hostname, 255),
            _syslog_field(app_name, 48),
            _syslog_field(procid or "", 128),
            _syslog_field(msgid, 32),
            "-",
        ]
    )
    return f"{header} {message}".encode()


def export_cef(session: Session, out: TextIO, **filters: Any) -> int:
    """Write matching records oldest first as CEF lines; return how many (filters of ``query``)."""
    return export_lines(session, out, to_cef, **filters)


@dataclass(frozen=True, slots=True)
class SiemDestination:
    """Where records go: a syslog receiver reached over TCP (octet counting) or UDP."""

    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def _normal_host(host: str) -> str:
    name = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(name).compressed
    return name


def siem_destination(settings: AuditSettings) -> SiemDestination | None:
    """Parse ``audit_siem_url`` against the egress allow list; None when shipping is off.

    Raises AuditError for a URL that is not ``tcp://host[:port]`` or ``udp://host[:port]``,
    or whose host is not in ``audit_siem_allow``.
    """
    url = (settings.audit_siem_url or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise AuditError(f"AMOS_AUDIT_SIEM_URL {url!r} has a bad port") from exc
    host = parts.hostname
    extras = (parts.path not in {"", "/"}, parts.query, parts.fragment, parts.username)
    if parts.scheme not in {"tcp", "udp"} or not host or any(extras):
        raise AuditError(f"AMOS_AUDIT_SIEM_URL {url!r} is not tcp://host:port or udp://host:port")
    allowed = {_normal_host(name) for name in settings.audit_siem_allow}
    if _normal_host(host) not in allowed:
        raise AuditError(
            f"refusing to ship the audit trail to {host}: it is not in AMOS_AUDIT_SIEM_ALLOW "
            f"({', '.join(sorted(allowed)) or 'empty'}); list the host there to allow it"
        )
    return SiemDestination(cast("Transport", parts.scheme), host, port or SYSLOG_PORT)


def _peer_closed(sock: socket.socket) -> bool:
    """Tell whether a syslog receiver (which never writes) closed or reset the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class SiemForwarder:
    """Ships every record after a persisted cursor to the configured syslog receiver.

    The cursor (the seq of the last record shipped) lives in ``settings.siem_cursor_path``
    and moves only after a whole batch was sent, so a crash or a dead receiver means records
    are sent again, never skipped. Over TCP a batch counts as sent once the kernel took it;
    UDP has no delivery signal at all, so prefer TCP where loss matters.
    """

    def __init__(
        self,
        store: Store,
        settings: AuditSettings,
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        hostname: str | None = None,
    ) -> None:
        if batch_size < 1 or poll_seconds <= 0 or backoff_seconds <= 0:
            raise ValueError("batch size, poll and backoff must be positive")
        self.destination = siem_destination(settings)
        self.store = store
        self.format = settings.audit_siem_format
        self.cursor_path = settings.siem_cursor_path
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max(max_backoff_seconds, backoff_seconds)
        self.hostname = hostname or socket.gethostname()
        self._cursor: int | None = None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """Whether a destination is configured; a disabled forwarder never opens a socket."""
        return self.destination is not None

    def cursor(self) -> int:
        """The seq of the last record shipped (0: none yet); AuditError if the file is bad."""
        if self._cursor is None:
            try:
                text = self.cursor_path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return 0
            except OSError as exc:
                raise AuditError(f"cannot read the SIEM cursor {self.cursor_path}: {exc}") from exc
            if not text.isdigit():
                raise AuditError(f"the SIEM cursor {self.cursor_path} does not hold a seq")
            self._cursor = int(text)
        return self._cursor

    def _save_cursor(self, seq: int) -> None:
        try:
            _write_atomically(self.cursor_path, f"{seq}\n")
        except OSError as exc:
            raise AuditError(f"cannot write the SIEM cursor {self.cursor_path}: {exc}") from exc
        self._cursor = seq

    def message(self, record: AuditRecord) -> bytes:
        """One record as the syslog message this forwarder sends (CEF or JSON body)."""
        body = to_cef(record) if self.format == "cef" else json_line(record)
        return to_syslog(
            body,
            hostname=self.hostname,
            severity=_SYSLOG_SEVERITY[record.outcome],
            at=record.at,
            procid=str(os.getpid()),
        )

    def _pending(self, after: int) -> list[AuditRecord]:
        statement = (sql_select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq)).limit(
            self.batch_size
        )
        try:
            with self.store.session(read_only=True) as session:
                records = [AuditRecord.model_validate(row) for row in session.scalars(statement)]
            if records:
                flush_links(self.store.engine)  # never ship a link a server crash could undo
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit trail to ship it: {exc}") from exc
        return records

    def _connect(self, destination: SiemDestination) -> socket.socket:
        kind = socket.SOCK_STREAM if destination.transport == "tcp" else socket.SOCK_DGRAM
        failure: OSError = OSError(f"{destination.host} has no address")
        for family, type_, proto, _, address in socket.getaddrinfo(
            destination.host, destination.port, type=kind
        ):
            sock = socket.socket(family, type_, proto)
            sock.settimeout(self.timeout_seconds)
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            return sock
        raise failure

    def _send(self, destination: SiemDestination, messages: list[bytes]) -> None:
        tcp = destination.transport == "tcp"
        if self._sock is not None and tcp and _peer_closed(self._sock):
            self.close()
        if self._sock is None:
            self._sock = self._connect(destination)
        if tcp:
            # RFC 6587 octet counting: "<length> <message>", so a message may hold newlines.
            self._sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
            return
        for message in messages:
            if len(message) > UDP_MAX_BYTES:
                _log.warning("audit record cut to %d bytes to fit a UDP datagram", UDP_MAX_BYTES)
            self._sock.send(message[:UDP_MAX_BYTES])

    def ship_batch(self) -> int:
        """Send up to ``batch_size`` records after the cursor, then advance it; return how many.

        Sends nothing and returns 0 when shipping is off. Raises AuditError when the store,
        the receiver or the cursor file fails; the cursor then stays where it was.
        """
        destination = self.destination
        if destination is None:
            return 0
        records = self._pending(self.cursor())
        if not records:
            return 0
        try:
            self._send(destination, [self.message(record) for record in records])
        except OSError as exc:
            self.close()
            raise AuditError(f"cannot ship audit records to {destination}: {exc}") from exc
        self._save_cursor(records[-1].seq)
        return len(records)

    def ship_pending(self) -> int:
        """Ship batches until caught up with the tail; return how many records were sent."""
        total = 0
        while True:
            shipped = self.ship_batch()
            total += shipped
            if shipped < self.batch_size:
                return total

    def run_forever(self, stop: threading.Event) -> None:
        """Ship new records until ``stop`` is set, retrying failures with backoff up to a cap.

        Returns at once when shipping is off; raises AuditError at once for a cursor file it
        cannot read, which retrying would not fix.
        """
        if self.destination is None:
            _log.info("SIEM shipping is off: AMOS_AUDIT_SIEM_URL is not set")
            return
        self.cursor()
        delay = self.backoff_seconds
        try:
            while not stop.is_set():
                try:
                    shipped = self.ship_batch()
                except AuditError as exc:
                    _log.warning("SIEM shipping failed, retrying in %.1f s: %s", delay, exc)
                    stop.wait(delay)
                    delay = min(delay * 2, self.max_backoff_seconds)
                    continue
                delay = self.backoff_seconds
                if shipped < self.batch_size:
                    stop.wait(self.poll_seconds)
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection to the receiver (the next send reconnects)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
