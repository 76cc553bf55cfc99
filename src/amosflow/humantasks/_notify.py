"""Send one task notification on every channel the operator turned on.

Email goes through a named SMTP connection (``AMOS_SMTP_CONNECTIONS``, as ``email.send``
uses); Slack and Teams through their incoming-webhook URLs. Every destination passes the
platform's egress policy first (``AMOS_EGRESS_ALLOW`` opens private ones), and no URL or
password ever appears in an error.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

import httpx

from amosflow import egress
from amosflow.errors import ActionError
from amosflow.humantasks import _inbox as inbox
from amosflow.humantasks._message import TaskNotification, console_link
from amosflow.humantasks._recipients import assignee_emails

if TYPE_CHECKING:
    from amosflow.config import NotifySettings, SmtpConnection, SmtpSettings
    from amosflow.store import Store

WEBHOOK_TIMEOUT_S = 10.0


class NotifyError(ActionError):
    """A channel did not take a notification; retryable, and free of URLs and secrets."""

    code = "amos.notify"

    def __init__(self, message: str) -> None:
        super().__init__(message, type_="NotifyError", retryable=True)


def _policy() -> egress.EgressPolicy:
    """The platform's own egress policy: public destinations, plus the worker's allow list."""
    return egress.EgressPolicy.from_config(
        {}, extra_allow=egress.worker_allow(), internal_ports=egress.internal_ports()
    )


def _smtp_send(connection: SmtpConnection, message: EmailMessage, recipients: list[str]) -> None:
    context = ssl.create_default_context(
        cafile=str(connection.ca_file) if connection.ca_file else None
    )
    smtp = (
        smtplib.SMTP_SSL(
            connection.host, connection.port, timeout=connection.timeout, context=context
        )
        if connection.ssl
        else smtplib.SMTP(connection.host, connection.port, timeout=connection.timeout)
    )
    with smtp:
        if connection.starttls:
            smtp.starttls(context=context)
        smtp.send_message(message, to_addrs=recipients)


async def _email(
    note: TaskNotification,
    recipients: list[str],
    name: str,
    smtp: SmtpSettings,
    policy: egress.EgressPolicy,
) -> None:
    connection = smtp.smtp_connections.get(name)
    if connection is None:
        raise NotifyError(f"AMOS_NOTIFY_SMTP_CONNECTION names unknown connection {name!r}")
    await egress.resolve(connection.host, connection.port, policy)
    message = EmailMessage()
    message["From"] = connection.from_
    message["To"] = ", ".join(recipients)
    message["Subject"] = note.subject
    message.set_content(note.text)
    try:
        await asyncio.to_thread(_smtp_send, connection, message, recipients)
    except (smtplib.SMTPException, OSError) as err:
        raise NotifyError(f"SMTP connection {name!r} refused the notification: {err}") from None


async def _post(
    channel: str, url: str, note: TaskNotification, policy: egress.EgressPolicy
) -> None:
    egress.check_url(url, policy)
    body = {"text": f"{note.subject}\n{note.link}"}
    try:
        async with egress.guarded_client(policy) as client:
            answer = await client.post(url, json=body, timeout=WEBHOOK_TIMEOUT_S)
    except ActionError:
        raise  # refused by the egress policy: names the host only, never retried
    except (httpx.HTTPError, OSError) as err:  # the URL is a secret: name only the failure
        raise NotifyError(f"{channel} webhook unreachable ({type(err).__name__})") from None
    if answer.status_code >= 300:  # noqa: PLR2004 - any non-2xx
        raise NotifyError(f"{channel} webhook answered {answer.status_code}")


async def notify_task(
    store: Store, task_id: str, event: str, settings: NotifySettings, smtp: SmtpSettings
) -> list[str]:
    """Send the notice of ``event`` on ``task_id``; return the channels that took it."""
    with store.session(read_only=True) as session:
        task = inbox.get(session, task_id)
        emails = assignee_emails(session, task) if settings.smtp_connection else []
    if task.status != "open":
        return []  # decided before the notice went out: nobody needs to act any more
    note = TaskNotification(event, task, console_link(settings.public_url, task.id))
    policy = _policy()
    sent: list[str] = []
    extra = [a.strip() for a in settings.email_to.split(",") if a.strip()]
    recipients = list(dict.fromkeys([*emails, *extra]))
    if settings.smtp_connection and recipients:
        await _email(note, recipients, settings.smtp_connection, smtp, policy)
        sent.append("email")
    for channel, secret in (
        ("slack", settings.slack_webhook_url),
        ("teams", settings.teams_webhook_url),
    ):
        if secret is not None and secret.get_secret_value():
            await _post(channel, secret.get_secret_value(), note, policy)
            sent.append(channel)
    return sent
