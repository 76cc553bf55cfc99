"""The ``email.send`` action: one message through an SMTP connection the runner names."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from amosflow.dsl._models import RENDERED
from amosflow.dsl.actions._registry import ActionSpec, Expr, WithModel, register
from amosflow.dsl.actions._sql import CONNECTION_NAME_PATTERN

MAX_RECIPIENTS = 100
MAX_ADDRESS_CHARS = 254
MAX_SUBJECT_CHARS = 998
MAX_BODY_CHARS = 10 * 1024 * 1024

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_RE = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*$")
_SECRET_REFERENCE = re.compile(r"^\$\{\s*secrets\.[^{}]+\}$")


def _rendered(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(RENDERED))


def _check_address(value: str) -> str:
    if len(value) > MAX_ADDRESS_CHARS or not ADDRESS_RE.match(value):
        raise ValueError(
            f"{value[:80]!r} is not a plain e-mail address (local@domain, ASCII, no display name)"
        )
    return value


Address = Annotated[
    str,
    AfterValidator(_check_address),
    WithJsonSchema({"type": "string", "maxLength": MAX_ADDRESS_CHARS, "format": "email"}),
]
ConnectionName = Annotated[str, StringConstraints(pattern=CONNECTION_NAME_PATTERN)]
Recipients = Annotated[list[Expr[Address]], Field(max_length=MAX_RECIPIENTS)]


class EmailSendWith(WithModel):
    """``with`` of ``email.send``: one message from the connection's sender address.

    ``connection`` names an entry of the runner's ``AMOS_SMTP_CONNECTIONS`` (host, port, TLS,
    username and the ``from`` address). ``to`` (1 to 100), ``cc`` and ``bcc`` (up to 100
    each) and ``reply_to`` are plain addresses; ``bcc`` recipients get the message but are
    not written in it. ``text`` is the plain body, ``html`` an optional HTML alternative.
    ``password`` is needed when the connection has a username and must be a secret
    reference (``${secrets.smtp.password}``), never a literal.

    Every recipient must be accepted before the message is sent, so a refusal never leaves
    a message delivered to some recipients only. The ``Message-ID`` is
    ``<sha256(idempotency key)@amosflow>``: the same on every attempt of the step, so a
    retried send is recognisable as the same message. Output: ``{"message_id", "accepted"}``.
    Failures: ``EmailError``, retryable for 4xx answers and lost connections, not for 5xx.
    """

    connection: Expr[ConnectionName]
    to: Expr[Annotated[list[Expr[Address]], Field(min_length=1, max_length=MAX_RECIPIENTS)]]
    cc: Expr[Recipients] = Field(default_factory=list)
    bcc: Expr[Recipients] = Field(default_factory=list)
    reply_to: Expr[Address] | None = None
    subject: str = Field(max_length=MAX_SUBJECT_CHARS)
    text: str = Field(max_length=MAX_BODY_CHARS)
    html: str | None = Field(default=None, max_length=MAX_BODY_CHARS)
    password: str | None = None

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("subject must be one line (no CR or LF)")
        return value

    @field_validator("password")
    @classmethod
    def _secret_reference_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _rendered(info) and not _SECRET_REFERENCE.match(value):
            raise ValueError(
                "password must be a secret reference such as ${secrets.smtp.password};"
                " a password is never written in a flow"
            )
        return value


register(
    ActionSpec(
        name="email.send",
        capability="email",
        with_model=EmailSendWith,
        description=(
            "Sends one e-mail through an SMTP connection named in the runner's"
            " AMOS_SMTP_CONNECTIONS; returns message_id and the accepted recipients."
        ),
    )
)
