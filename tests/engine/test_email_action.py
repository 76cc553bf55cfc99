"""`email.send` against a real SMTP server (aiosmtpd) on loopback, plain and STARTTLS + AUTH.

The last tests run the action through the interpreter on the session's Temporal server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import hashlib
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from amosflow.config import EngineSettings
from amosflow.dsl import validate_flow
from amosflow.dsl.actions import validate_with
from amosflow.engine.activities import ActionContext
from amosflow.engine.activities import email as email_actions
from amosflow.engine.types import ActionCall
from amosflow.errors import ActionError
from amosflow.testing import run_flow
from tests.engine.flows import flow

PASSWORD = "smtp-pw-canary-91c2"
USERNAME = "mailer"


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Recorder:
    """An aiosmtpd handler: refuses reject-* (550) and later-* (451), stores the rest."""

    messages: list[Received] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("later"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 2.0.0 queued"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MailServer:
    recorder: Recorder
    port: int


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    """A plain SMTP server on 127.0.0.1, configured as connection `local`."""
    recorder = Recorder()
    port = _free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    connections = {"local": {"host": "127.0.0.1", "port": port, "from": "AMOS <flows@example.org>"}}
    monkeypatch.setenv("AMOS_SMTP_CONNECTIONS", json.dumps(connections))
    try:
        yield MailServer(recorder, port)
    finally:
        controller.stop()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amos test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    """An SMTP server that requires STARTTLS and AUTH, as connection `secure` (its CA only)."""
    ca, cert, key = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    port = _free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticate,
    )
    controller.start()
    base = {"host": "127.0.0.1", "port": port, "starttls": True, "from": "flows@example.org"}
    connections = {
        "secure": {**base, "username": USERNAME, "ca_file": str(ca)},
        "untrusted": {**base, "username": USERNAME},  # the system CAs do not know ours
        "cleartext": {**base, "starttls": False, "username": USERNAME},
    }
    monkeypatch.setenv("AMOS_SMTP_CONNECTIONS", json.dumps(connections))
    try:
        yield MailServer(recorder, port)
    finally:
        controller.stop()


def run_action(key: str = "run-1/mail/", **with_: Any) -> dict[str, Any]:
    """Run the email.send implementation the way the activity wrapper does."""
    params = validate_with("email.send", with_)
    call = ActionCall(
        action="email.send", with_=with_, run_id="run-1", step_id="mail", iteration="",
        idempotency_key=key,
    )  # fmt: skip
    ctx = ActionContext(call=call, artifacts=None)  # type: ignore[arg-type]
    return asyncio.run(email_actions.send(ctx, params))


def fails(**with_: Any) -> ActionError:
    with pytest.raises(ActionError) as caught:
        run_action(**with_)
    assert caught.value.type == "EmailError", str(caught.value)
    return caught.value


def expected_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()}@amosflow>"


MAIL = {"connection": "local", "subject": "Invoice 42 approved", "text": "Hello Ada,\nall good.\n"}


# -- sending ---------------------------------------------------------------------------------


def test_send_delivers_to_every_recipient_with_headers_and_bodies(
    smtp_server: MailServer,
) -> None:
    """to, cc and bcc are in the envelope; bcc is not in the message; text and HTML parts."""
    output = run_action(
        **MAIL,
        to=["ada@example.com", "grace@example.com"],
        cc=["ops@example.com"],
        bcc=["audit@example.com", "ADA@example.com"],
        reply_to="help@example.org",
        html="<p>Hello <b>Ada</b></p>",
    )
    accepted = ["ada@example.com", "grace@example.com", "ops@example.com", "audit@example.com"]
    assert output == {"message_id": expected_id("run-1/mail/"), "accepted": accepted}
    [received] = smtp_server.recorder.messages
    assert received.mail_from == "flows@example.org"
    assert received.recipients == accepted
    message = received.message
    assert message["From"] == "AMOS <flows@example.org>"
    assert message["To"] == "ada@example.com, grace@example.com"
    assert message["Cc"] == "ops@example.com"
    assert message["Bcc"] is None
    assert "audit@example.com" not in message.as_string()
    assert message["Reply-To"] == "help@example.org"
    assert message["Subject"] == "Invoice 42 approved"
    assert message["Message-ID"] == output["message_id"]
    assert message["Date"]
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().replace("\r\n", "\n") == "Hello Ada,\nall good.\n"
    assert html.get_content().strip() == "<p>Hello <b>Ada</b></p>"


def test_non_ascii_subject_and_body_arrive_intact(smtp_server: MailServer) -> None:
    run_action(**{**MAIL, "subject": "Grüße — ✓", "text": "Straße\n"}, to=["ada@example.com"])
    [received] = smtp_server.recorder.messages
    assert received.message["Subject"] == "Grüße — ✓"
    body = received.message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "Straße\n"


def test_message_id_is_stable_across_retries(smtp_server: MailServer) -> None:
    """Two attempts of one step (same idempotency key) send the same Message-ID; another step not."""
    first = run_action(**MAIL, to=["ada@example.com"])
    again = run_action(**MAIL, to=["ada@example.com"])
    other = run_action(key="run-1/other/", **MAIL, to=["ada@example.com"])
    ids = [r.message["Message-ID"] for r in smtp_server.recorder.messages]
    assert ids == [first["message_id"], first["message_id"], other["message_id"]]
    assert first["message_id"] == again["message_id"] == expected_id("run-1/mail/")
    assert other["message_id"] != first["message_id"]


# -- failures --------------------------------------------------------------------------------


def test_a_550_recipient_is_not_retryable_and_nothing_is_sent(smtp_server: MailServer) -> None:
    """A permanent refusal fails the step for good; the good recipient gets nothing either."""
    err = fails(**MAIL, to=["ada@example.com", "reject-me@example.com"])
    assert not err.retryable
    assert "reject-me@example.com: 550" in str(err)
    assert "nothing was sent" in str(err)
    assert smtp_server.recorder.messages == []


def test_a_451_recipient_is_retryable(smtp_server: MailServer) -> None:
    """A temporary refusal may succeed later: retryable, and nothing sent meanwhile."""
    err = fails(**MAIL, to=["later@example.com"], cc=["ada@example.com"])
    assert err.retryable
    assert "451" in str(err)
    assert smtp_server.recorder.messages == []
    mixed = fails(**MAIL, to=["later@example.com", "reject@example.com"])
    assert not mixed.retryable  # one permanent refusal makes a retry pointless


def test_an_unreachable_server_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()  # nothing listens there
    connections = {
        "local": {"host": "127.0.0.1", "port": port, "from": "f@example.org", "timeout": 5}
    }
    monkeypatch.setenv("AMOS_SMTP_CONNECTIONS", json.dumps(connections))
    err = fails(**MAIL, to=["ada@example.com"])
    assert err.retryable
    assert "ConnectionRefusedError" in str(err)


def test_unknown_or_missing_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AMOS_SMTP_CONNECTIONS", json.dumps({"b": {"host": "h", "from": "f@example.org"}})
    )
    err = fails(**{**MAIL, "connection": "nope"}, to=["ada@example.com"])
    assert not err.retryable
    assert "unknown SMTP connection 'nope'; configured: b" in str(err)
    monkeypatch.delenv("AMOS_SMTP_CONNECTIONS")
    assert "AMOS_SMTP_CONNECTIONS" in str(fails(**MAIL, to=["ada@example.com"]))
    monkeypatch.setenv("AMOS_SMTP_CONNECTIONS", '{"local": {"host": "h"}}')  # no "from"
    assert "AMOS_SMTP_CONNECTIONS" in str(fails(**MAIL, to=["ada@example.com"]))


# -- TLS and credentials ---------------------------------------------------------------------


def test_starttls_and_login_with_a_private_ca(tls_server: MailServer) -> None:
    """STARTTLS verified against the connection's CA file, then AUTH, then the message."""
    output = run_action(
        **{**MAIL, "connection": "secure"}, to=["ada@example.com"], password=PASSWORD
    )
    [received] = tls_server.recorder.messages
    assert received.message["Message-ID"] == output["message_id"]


def test_a_wrong_password_is_not_retryable(tls_server: MailServer) -> None:
    err = fails(**{**MAIL, "connection": "secure"}, to=["ada@example.com"], password="wrong-pw")
    assert not err.retryable
    assert "535" in str(err)
    assert tls_server.recorder.messages == []


def test_an_untrusted_certificate_is_refused(tls_server: MailServer) -> None:
    err = fails(**{**MAIL, "connection": "untrusted"}, to=["ada@example.com"], password=PASSWORD)
    assert not err.retryable
    assert "certificate" in str(err)
    assert tls_server.recorder.messages == []


def test_credentials_are_never_sent_without_tls(tls_server: MailServer) -> None:
    """A connection with a username but no TLS is refused before connecting."""
    err = fails(**{**MAIL, "connection": "cleartext"}, to=["ada@example.com"], password=PASSWORD)
    assert "without TLS" in str(err)
    assert not err.retryable
    missing = fails(**{**MAIL, "connection": "secure"}, to=["ada@example.com"])
    assert "with.password" in str(missing)


# -- validation ------------------------------------------------------------------------------


def _mail_step(**with_: Any) -> dict[str, Any]:
    return {
        "id": "mail",
        "type": "action",
        "action": "email.send",
        "with": {**MAIL, **with_},
        "retry": {"max_attempts": 3, "backoff": "50ms"},
    }


def test_with_is_validated() -> None:
    """Addresses, recipient counts, one-line subjects and secret-only passwords."""
    doc = flow(
        _mail_step(to=[]),
        {**_mail_step(to=["ada@example.com", "not an address"]), "id": "b"},
        {**_mail_step(to=["a@example.com"] * 101), "id": "c"},
        {**_mail_step(to=["a@example.com"], subject="Hi\r\nBcc: x@example.com"), "id": "d"},
        {**_mail_step(to=["a@example.com"], password="hunter2"), "id": "e"},
        {**_mail_step(to=["Ada <a@example.com>"]), "id": "f"},
    )
    problems = {p.pointer: p.message for p in validate_flow(doc)}
    assert set(problems) == {
        "/steps/0/with/to",
        "/steps/1/with/to/1",
        "/steps/2/with/to",
        "/steps/3/with/subject",
        "/steps/4/with/password",
        "/steps/5/with/to/0",
    }
    assert "secret reference" in problems["/steps/4/with/password"]
    fine = flow(
        _mail_step(to="${inputs.to}", password="${secrets.smtp.password}"),
        requires={"secrets": ["smtp.password"]},
    )
    assert validate_flow(fine) == []


# -- through the engine ----------------------------------------------------------------------


@pytest.mark.temporal
def test_flow_sends_mail_over_starttls_with_a_secret_password(
    settings: EngineSettings, tls_server: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password reaches SMTP AUTH from a secret; the Message-ID comes from the step's key."""
    monkeypatch.setenv("AMOS_SECRET_SMTP_PASSWORD", PASSWORD)
    doc = flow(
        _mail_step(
            connection="secure",
            to="${inputs.to}",
            subject="Welcome, ${inputs.name}",
            text="Hello ${inputs.name}!",
            password="${secrets.smtp.password}",
        ),
        outputs={"id": "${steps.mail.output.message_id}", "to": "${steps.mail.output.accepted}"},
        requires={"secrets": ["smtp.password"], "capabilities": ["email"]},
    )
    result = asyncio.run(
        run_flow(settings, doc, {"to": ["ada@example.com"], "name": "Ada"}, run_id="welcome-ada")
    )
    assert result["status"] == "completed", result["error"]
    [received] = tls_server.recorder.messages
    assert result["output"] == {"id": received.message["Message-ID"], "to": ["ada@example.com"]}
    assert received.message["Subject"] == "Welcome, Ada"
    assert received.message["Message-ID"] == expected_id(f"{result['run_id']}/mail/0")
    assert PASSWORD not in str(result)


@pytest.mark.temporal
def test_flow_fails_at_once_on_a_permanent_refusal(
    settings: EngineSettings, smtp_server: MailServer
) -> None:
    """A 550 is not retried (the step allows 3 attempts) and the run fails with EmailError."""
    doc = flow(_mail_step(to=["reject@example.com"]))
    result = asyncio.run(run_flow(settings, doc, {}))
    assert result["status"] == "failed"
    assert result["error"]["type"] == "EmailError"
    assert result["error"]["step"] == "mail"
    assert "550" in result["error"]["message"]
    assert smtp_server.recorder.messages == []
