"""`email.send`: one message through an SMTP connection the runner names.

The server, port, TLS mode, username and sender address come from the process setting
``AMOS_SMTP_CONNECTIONS``; a flow names the connection, the recipients and the content, and
gives the password (when the connection has a username) as a ``${secrets.…}`` reference that
the activity wrapper fills in here. ``smtplib`` runs in a thread with the connection's
timeout. The SMTP transaction is all or nothing: every recipient is offered (``RCPT TO``)
before the content, and one refusal resets the transaction, so no message reaches only some
recipients. The ``Message-ID`` is derived from the step's idempotency key, so every attempt
of a step sends the same message (decision 0027).
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, parseaddr
from typing import Any

from amosflow.config import SmtpConnection, SmtpSettings
from amosflow.engine.activities._base import ActionContext, implementation
from amosflow.errors import ActionError

SETTING = "AMOS_SMTP_CONNECTIONS"
MESSAGE_ID_DOMAIN = "amosflow"
_OK = 250
_FORWARDED = 251
_TRANSIENT = range(400, 500)
_PERMANENT = range(500, 600)
# 7bit: non-ASCII bodies are quoted-printable or base64, which every server accepts.
_POLICY = email.policy.SMTP.clone(cte_type="7bit")
# Written with lines of up to 998 characters (RFC 5322's limit), so the long Message-ID is
# never folded onto a continuation line; the bodies keep their 76-character encoding.
_WIRE = _POLICY.clone(max_line_length=998)


def message_id(idempotency_key: str) -> str:
    """The Message-ID of a step's message: the same for every attempt of that step."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()}@{MESSAGE_ID_DOMAIN}>"


class _RefusedError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


def _connection(name: str) -> SmtpConnection:
    try:
        connections = SmtpSettings().smtp_connections
    except ValueError:
        raise _RefusedError(
            f"{SETTING} is not a JSON object of connection name to"
            ' {"host", "port", "starttls", "ssl", "username", "from", "timeout", "ca_file"}',
            retryable=False,
        ) from None
    connection = connections.get(name)
    if connection is None:
        known = ", ".join(sorted(connections)) or f"none: set {SETTING}"
        raise _RefusedError(
            f"unknown SMTP connection {name!r}; configured: {known}", retryable=False
        )
    return connection


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    unique: list[str] = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _sender(name: str, connection: SmtpConnection) -> tuple[str, str]:
    """The connection's sender as a header value and as the envelope address."""
    display, address = parseaddr(connection.from_)
    single = len(getaddresses([connection.from_])) == 1
    if not single or "@" not in address or any(c in connection.from_ for c in "\r\n"):
        raise _RefusedError(
            f"SMTP connection {name!r}: 'from' is not an address (addr@domain or"
            " Name <addr@domain>)",
            retryable=False,
        )
    return formataddr((display, address)), address


def _message(params: Any, sender: str, identifier: str) -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = ", ".join(params.to)
    if params.cc:
        message["Cc"] = ", ".join(params.cc)
    if params.reply_to:
        message["Reply-To"] = params.reply_to
    message["Subject"] = params.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = identifier
    message.set_content(params.text)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    return message  # Bcc recipients are in the envelope only, never in the message


def _tls_context(connection: SmtpConnection) -> ssl.SSLContext:
    cafile = str(connection.ca_file) if connection.ca_file is not None else None
    return ssl.create_default_context(cafile=cafile)


def _deliver(
    connection: SmtpConnection,
    envelope_from: str,
    data: bytes,
    recipients: list[str],
    password: str | None,
) -> None:
    """One SMTP session: connect, TLS, log in, offer every recipient, then the content."""
    context = _tls_context(connection) if connection.ssl or connection.starttls else None
    smtp = (
        smtplib.SMTP_SSL(
            connection.host, connection.port, timeout=connection.timeout, context=context
        )
        if connection.ssl
        else smtplib.SMTP(connection.host, connection.port, timeout=connection.timeout)
    )
    with smtp:
        smtp.ehlo()
        if connection.starttls:
            smtp.starttls(context=context)
            smtp.ehlo()
        if connection.username is not None and password is not None:
            smtp.login(connection.username, password)
        code, answer = smtp.mail(envelope_from)
        if code != _OK:
            smtp.rset()
            raise smtplib.SMTPSenderRefused(code, answer, envelope_from)
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, answer = smtp.rcpt(recipient)
            if code not in {_OK, _FORWARDED}:
                refused[recipient] = (code, answer)
        if refused:
            smtp.rset()  # nobody gets it unless everybody can
            raise smtplib.SMTPRecipientsRefused(refused)
        code, answer = smtp.data(data)
        if code != _OK:
            smtp.rset()
            raise smtplib.SMTPDataError(code, answer)


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)


def _failure(name: str, err: Exception) -> _RefusedError:
    """Describe an SMTP failure; 4xx answers and lost connections may be retried, 5xx not."""
    where = f"SMTP connection {name!r}"
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in err.recipients.values()]
        listed = "; ".join(
            f"{address}: {code} {_text(answer)}"
            for address, (code, answer) in err.recipients.items()
        )
        return _RefusedError(
            f"{where} refused recipients, nothing was sent: {listed}",
            retryable=all(code in _TRANSIENT for code in codes),
        )
    if isinstance(err, smtplib.SMTPResponseException):
        code = err.smtp_code
        return _RefusedError(
            f"{where} answered {code} {_text(err.smtp_error)}", retryable=code not in _PERMANENT
        )
    if isinstance(err, smtplib.SMTPServerDisconnected):
        return _RefusedError(f"{where}: the server closed the connection: {err}", retryable=True)
    if isinstance(err, smtplib.SMTPException):  # STARTTLS or AUTH not offered, and the like
        return _RefusedError(f"{where}: {err}", retryable=False)
    if isinstance(err, ssl.SSLCertVerificationError):
        return _RefusedError(
            f"{where}: the server's certificate is not trusted: {err.verify_message}",
            retryable=False,
        )
    return _RefusedError(f"{where}: {type(err).__name__}: {err}", retryable=True)


def _credentials(name: str, connection: SmtpConnection, password: str | None) -> None:
    if connection.username is None:
        if password is not None:
            raise _RefusedError(
                f"SMTP connection {name!r} has no username, so with.password is not used;"
                " remove it or set the connection's username",
                retryable=False,
            )
        return
    if password is None:
        raise _RefusedError(
            f"SMTP connection {name!r} logs in as a user: give with.password as a secret"
            " reference (${secrets.…})",
            retryable=False,
        )
    if not (connection.starttls or connection.ssl):
        raise _RefusedError(
            f"SMTP connection {name!r} would send its password without TLS: set starttls or"
            " ssl on the connection",
            retryable=False,
        )


@implementation("email.send")
async def send(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Send the message; return its Message-ID and the recipients the server accepted."""
    name = params.connection
    identifier = message_id(ctx.idempotency_key)
    recipients = _unique([*params.to, *params.cc, *params.bcc])
    try:
        connection = _connection(name)
        _credentials(name, connection, params.password)
        header_from, envelope_from = _sender(name, connection)
        data = _message(params, header_from, identifier).as_bytes(policy=_WIRE)
        try:
            await asyncio.to_thread(
                _deliver, connection, envelope_from, data, recipients, params.password
            )
        except (smtplib.SMTPException, OSError) as err:
            raise _failure(name, err) from None
    except _RefusedError as err:
        raise ActionError(
            ctx.redact(f"email.send: {err}"), type_="EmailError", retryable=err.retryable
        ) from None
    return {"message_id": identifier, "accepted": recipients}
