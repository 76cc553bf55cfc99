"""The store's tables as typed SQLAlchemy models; migrations must match them exactly."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - Mapped[] annotations are read at run time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amosflow.store._types import JSONValue, UTCDateTime, utcnow

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "timed_out")
DEFAULT_FOLDER = "default"
#: The folder of audit records about the install as a whole (identity, runners, the key
#: ring): only an auditor of every folder reads them.
INSTALL_FOLDER = "*"
PRINCIPAL_KINDS = ("user", "service")
PRINCIPAL_SOURCES = ("local", "scim", "oidc")
ROLES = ("analyst", "operator", "administrator", "approver", "auditor", "service")
BINDING_SUBJECTS = ("principal", "group")
RUN_TRIGGERS = ("manual", "schedule", "webhook", "deferred", "rerun", "cli")

# Deterministic constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base whose metadata is the target of every migration."""

    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    """One run as the control plane knows it (Temporal holds the history)."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        CheckConstraint(_one_of("trigger", RUN_TRIGGERS), name="trigger"),
        Index(None, "created_at", "run_id"),
        Index(None, "flow_name", "created_at"),
        Index(None, "status", "created_at"),
        Index(None, "folder", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    flow_name: Mapped[str] = mapped_column(String(200))
    flow_version: Mapped[str] = mapped_column(String(64), default="")
    flow_hash: Mapped[str] = mapped_column(String(128))
    config_hash: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_ref: Mapped[str | None] = mapped_column(String(500))
    folder: Mapped[str] = mapped_column(String(200), default=DEFAULT_FOLDER)
    started_by: Mapped[str | None] = mapped_column(String(200))
    inputs: Mapped[Any] = mapped_column(JSONValue)
    output: Mapped[Any | None] = mapped_column(JSONValue)
    error: Mapped[Any | None] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxEntry(Base):
    """An event waiting to be published, written in the transaction of the change it announces."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "published_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(500))
    event: Mapped[Any] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """A webhook delivery id already accepted, kept to refuse replays."""

    __tablename__ = "webhook_deliveries"

    hook: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    run_id: Mapped[str] = mapped_column(String(200))


AUDIT_OUTCOMES = ("ok", "denied", "error")


class AuditRow(Base):
    """One record of the hash-chained audit trail; ``amosflow.audit`` is its only writer."""

    __tablename__ = "audit_records"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", AUDIT_OUTCOMES), name="outcome"),
        Index(None, "at"),
        Index(None, "actor", "seq"),
        Index(None, "action", "seq"),
        Index(None, "resource", "seq"),
        Index(None, "folder", "seq"),
    )

    # Assigned by the writer under its lock, never by the database: the chain must be gap-free.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(500))
    folder: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(8))
    details: Mapped[Any] = mapped_column(JSONValue)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditPendingRow(Base):
    """An audit record committed with its change but not yet linked into the chain.

    On PostgreSQL appenders write here without the chain's lock; the chainer moves rows into
    ``audit_records`` in ``id`` batches, assigning seq and hashes, and deletes them here.
    """

    __tablename__ = "audit_pending"
    __table_args__ = (CheckConstraint(_one_of("outcome", AUDIT_OUTCOMES), name="outcome"),)

    # 64-bit on PostgreSQL: ids are never reused; SQLite autoincrements INTEGER keys only.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(500))
    folder: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(8))
    details: Mapped[Any] = mapped_column(JSONValue)


class AuditCheckpointRow(Base):
    """A signed statement that the audit chain had ``hash`` at ``seq`` (also kept outside)."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class SecretRow(Base):
    """A secret of a folder's vault: its current version, never its value.

    A folder is a namespace: the same name in two folders is two secrets.
    """

    __tablename__ = "secrets"

    folder: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class SecretVersionRow(Base):
    """One version of a secret: AES-256-GCM ciphertext and its wrapped data key, only."""

    __tablename__ = "secret_versions"
    __table_args__ = (
        Index(None, "kek_id", "kek_version"),
        ForeignKeyConstraint(["folder", "name"], ["secrets.folder", "secrets.name"]),
    )

    folder: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(200))
    kek_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FolderRow(Base):
    """A folder: the hard isolation boundary every flow, run, trigger and secret belongs to."""

    __tablename__ = "folders"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CatalogFolderRow(Base):
    """Which folder a catalog object (flow, config, trigger) belongs to; Git keeps the object."""

    __tablename__ = "catalog_folders"
    __table_args__ = (Index(None, "folder", "kind"),)

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    folder: Mapped[str] = mapped_column(String(200))


class PrincipalRow(Base):
    """A user (local, SCIM-provisioned or OIDC) or a service account; never a plaintext secret.

    ``password_hash`` is argon2id: the password of a local user, the client secret of a
    service account, empty for users who sign in through the IdP. Every session token issued
    before ``tokens_valid_after`` is dead, which is how deactivation revokes them all at once.
    """

    __tablename__ = "principals"
    __table_args__ = (
        CheckConstraint(_one_of("kind", PRINCIPAL_KINDS), name="kind"),
        CheckConstraint(_one_of("source", PRINCIPAL_SOURCES), name="source"),
        Index(None, "source", "external_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    tokens_valid_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GroupRow(Base):
    """A group of principals (SCIM-provisioned or local); role bindings name it by display name."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GroupMemberRow(Base):
    """Membership of one principal in one group."""

    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    principal_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )


class RoleBindingRow(Base):
    """A role granted to a principal or a group in one folder (``*``: every folder).

    ``condition`` is an optional CEL expression over ``resource`` and ``principal`` (ABAC);
    the binding grants nothing where it is false.
    """

    __tablename__ = "role_bindings"
    __table_args__ = (
        CheckConstraint(_one_of("subject_kind", BINDING_SUBJECTS), name="subject_kind"),
        CheckConstraint(_one_of("role", ROLES), name="role"),
        Index(None, "subject_kind", "subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    folder: Mapped[str] = mapped_column(String(200))
    condition: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiTokenRow(Base):
    """A personal API token or a service account's issued token: only its SHA-256 is kept.

    The token is 256 random bits, so a plain SHA-256 cannot be guessed back; ``scopes``
    narrows what the owner's roles allow (null: everything they allow).
    """

    __tablename__ = "api_tokens"
    __table_args__ = (Index(None, "principal_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("principals.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[Any | None] = mapped_column(JSONValue)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditHoldRow(Base):
    """A legal hold: retention removes no audit record of ``folder`` (``*``: any) while active.

    A hold is active until ``released_at`` is set; placing and releasing one is audited.
    """

    __tablename__ = "audit_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    folder: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditAnchorRow(Base):
    """Where the audit chain starts after retention: the last removed record's seq and hash.

    One row at most (``id`` is always 1); the first remaining record links to ``hash`` and
    has seq ``seq + 1``.
    """

    __tablename__ = "audit_anchor"
    __table_args__ = (CheckConstraint("id = 1", name="single"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, default=1)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    pruned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


TASK_STATUSES = ("open", "decided", "expired", "cancelled")
TASK_KINDS = ("approval", "form", "review")


class TaskRow(Base):
    """A human task in the inbox: the mirror of a human step a run waits on.

    Temporal holds the truth (the run waits on the ``decide`` update); this row lets people
    list, claim and find tasks across runs. One row per run, step and loop iteration.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_one_of("status", TASK_STATUSES), name="status"),
        CheckConstraint(_one_of("kind", TASK_KINDS), name="kind"),
        UniqueConstraint("run_id", "step_id", "iteration"),
        Index(None, "status", "created_at"),
        Index(None, "folder", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200))
    workflow_id: Mapped[str] = mapped_column(String(400))
    step_id: Mapped[str] = mapped_column(String(200))
    iteration: Mapped[str] = mapped_column(String(200))
    flow: Mapped[str] = mapped_column(String(200))
    folder: Mapped[str] = mapped_column(String(200), default=DEFAULT_FOLDER)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    assignees: Mapped[Any] = mapped_column(JSONValue)
    form: Mapped[Any | None] = mapped_column(JSONValue)
    status: Mapped[str] = mapped_column(String(16), default="open")
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    started_by: Mapped[str | None] = mapped_column(String(200))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    decision: Mapped[Any | None] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


RUNNER_STATUSES = ("active", "draining", "revoked")
RUNNER_JOB_STATES = ("queued", "leased", "completed", "failed")
AI_USAGE_OUTCOMES = ("pending", "ok", "error")


class RunnerRow(Base):
    """A runner: an outbound-only worker in some network zone, known by its client certificate.

    ``capabilities`` is what it offers now, never more than its enrollment granted; ``load``
    and ``max_jobs`` are what its last heartbeat reported. Revocation is a status, not a
    deletion, so the audit trail and old jobs keep pointing at a row.
    """

    __tablename__ = "runners"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUNNER_STATUSES), name="status"),
        Index(None, "status", "zone"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    zone: Mapped[str] = mapped_column(String(100))
    capabilities: Mapped[Any] = mapped_column(JSONValue)
    cert_serial: Mapped[str] = mapped_column(String(64), unique=True)
    cert_not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active")
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    load: Mapped[int] = mapped_column(Integer, default=0)
    max_jobs: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EnrollmentTokenRow(Base):
    """A one-time runner enrollment token: only its SHA-256 is kept, with what it grants."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    zone: Mapped[str] = mapped_column(String(100))
    capabilities: Mapped[Any] = mapped_column(JSONValue)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_by_runner: Mapped[str | None] = mapped_column(String(64))


class RunnerJobRow(Base):
    """One step's side effect waiting for, leased to, or finished by a runner.

    ``job_id`` is the step's idempotency key, the same across activity retries, so a retry
    finds the finished job instead of running it again. ``fence`` grows by one with every
    lease; only a report carrying the current fence is accepted. ``payload`` holds secret
    references only, never values.
    """

    __tablename__ = "runner_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("state", RUNNER_JOB_STATES), name="state"),
        Index(None, "state", "created_at"),
        Index(None, "runner_id", "state"),
        Index(None, "run_id"),
    )

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200))
    step: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(200))
    capability: Mapped[str] = mapped_column(String(32))
    zone: Mapped[str | None] = mapped_column(String(100))
    folder: Mapped[str] = mapped_column(String(200), default=DEFAULT_FOLDER)
    payload: Mapped[Any] = mapped_column(JSONValue)
    task_token: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    runner_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("runners.id"))
    fence: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[Any | None] = mapped_column(JSONValue)
    error: Mapped[Any | None] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AiUsageRow(Base):
    """One model call through the gateway: who spent how many tokens, on what, how fast.

    A row is written before the call with the tokens it may spend (``outcome`` `pending`) and
    settled after it with what it did spend, so concurrent calls cannot together overrun a
    budget. Budgets sum ``total_tokens`` per run, or per folder and UTC day, for one model.
    """

    __tablename__ = "ai_usage"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", AI_USAGE_OUTCOMES), name="outcome"),
        Index(None, "model", "run_id"),
        Index(None, "model", "folder", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    model: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[str] = mapped_column(String(300))
    revision: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(String(200), default="")
    step_id: Mapped[str] = mapped_column(String(200), default="")
    flow: Mapped[str] = mapped_column(String(200), default="")
    folder: Mapped[str] = mapped_column(String(200), default=DEFAULT_FOLDER)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16), default="pending")


class ScimResourceRow(Base):
    """The whole SCIM document an IdP wrote for a user or group, beside its principal or group.

    ``id`` is the principal's or the group's id. The columns the rest of the node reads
    (username, email, active, members) stay on ``principals`` and ``groups``; this row keeps
    every other attribute, so what an IdP writes reads back. ``version`` is the ETag's
    counter. A deleted user keeps its principal (the audit trail names it) and its row here
    with ``deleted_at`` set, which is what makes it 404 to SCIM.
    """

    __tablename__ = "scim_resources"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(16))
    document: Mapped[Any] = mapped_column(JSONValue)
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
