"""`amos audit …`: verify, checkpoint, export, ship and prune the hash-chained audit trail."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amosflow import audit
from amosflow.audit._auto import poll_interval
from amosflow.cli import exits
from amosflow.cli._local import fail, local_store, os_actor
from amosflow.config import NodeSettings
from amosflow.errors import AmosError
from amosflow.node import (
    Demotion,
    ServiceUser,
    covers,
    ensure_service_user,
    needed_paths,
)
from amosflow.store import Store

app = typer.Typer(help="Check, ship and prune the audit trail.", no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds that stop retention.", no_args_is_help=True)
app.add_typer(hold_app, name="hold")
#: A chain that fails verification exits like a failed run: 1.
VERIFY_FAILED = exits.RUN_FAILED
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_JOIN_SECONDS = 0.5


class ExportFormat(StrEnum):
    """What `amos audit export` writes."""

    jsonl = "jsonl"
    cef = "cef"


@app.callback()
def audit_group() -> None:
    """Check, ship and prune the audit trail (keeps `verify` a subcommand)."""


@hold_app.callback()
def hold_group() -> None:
    """Place, release and list legal holds."""


@contextlib.contextmanager
def _store() -> Iterator[Store]:
    """The store, opened as the service user when root runs this on a root node's home."""
    settings = audit.AuditSettings()
    user = _shared_home_user(settings.home)
    if user is not None:
        _become(user, settings)
    with local_store() as store:
        yield store


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Yield an event that SIGTERM or SIGINT sets, restoring the previous handlers after."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        # Safe here: the main thread never holds this event's lock (the work runs elsewhere).
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_until_stopped(work: Callable[[threading.Event], None], stop: threading.Event) -> None:
    """Run ``work(stop)`` in a thread, the main thread free for signals; re-raise its error."""
    failures: list[BaseException] = []

    def target() -> None:
        try:
            work(stop)
        except BaseException as exc:  # handed to the main thread below
            failures.append(exc)

    thread = threading.Thread(target=target, name="amos-audit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(_JOIN_SECONDS)
    if failures:
        raise failures[0]


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _public_key(path: Path, *, required: bool) -> Ed25519PublicKey | None:
    if not path.exists() and not required:
        return None
    return audit.load_public_key(path)


def _shared_home_user(home: Path) -> ServiceUser | None:
    """The service user of a root node's shared home (decision 0049), when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(NodeSettings().service_user)
        info = home.stat()
    except (KeyError, OSError):
        return None
    shared = info.st_uid == 0 and info.st_gid == entry.pw_gid and info.st_mode & stat.S_ISVTX
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid) if shared else None


def _become(user: ServiceUser, settings: audit.AuditSettings) -> None:
    """Turn this process into ``user``, with the view of the files it needs (ADR 0049)."""
    reveal = [settings.directory, settings.sink_path.parent]
    Demotion(user, covers(needed_paths(settings.home, reveal), user))()


def _signing(settings: audit.AuditSettings) -> tuple[audit.CheckpointSigner, audit.JsonlSink]:
    """The checkpoint key and sink: retention and holds are signed like checkpoints (ADR 0048).

    Run these commands as the OS user that owns the key, as for `amos audit checkpointer`.
    On a root node's shared home, root loads the key and opens the sink, then becomes the
    service user before this command opens the store, which that user could have replaced
    with a link (ADR 0049). Call it before opening the store.
    """
    signer = audit.CheckpointSigner.from_file(settings.key_path)
    sink = audit.JsonlSink(settings.sink_path)
    user = _shared_home_user(settings.home)
    if user is not None:
        sink.keep_open()
        _become(user, settings)
    return signer, sink


def _moment(value: str | None, option: str) -> datetime | None:
    """Parse an ISO 8601 date or date-time; without an offset it is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or date-time", param_hint=option
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@app.command("verify")
def verify(
    sink: Annotated[
        Path | None,
        typer.Option("--sink", help="Checkpoint JSON Lines file; default from AMOS_AUDIT_SINK."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Checkpoint public key; default <home>/audit."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Walk the whole chain and its checkpoints; exit 0 when intact, 1 at the first bad record."""
    settings = audit.AuditSettings()
    try:
        key = _public_key(public_key or settings.public_key_path, required=public_key is not None)
        with _store() as store:
            report = audit.verify(
                store, sink=audit.JsonlSink(sink or settings.sink_path), public_key=key
            )
    except AmosError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    elif report.ok:
        last = report.last_checkpoint_seq
        pruned = "" if report.anchor_seq is None else f" after seq {report.anchor_seq} (pruned)"
        typer.echo(f"ok: {report.checked} records{pruned}, last checkpoint at seq {last or '-'}")
    else:
        typer.echo(f"FAIL at seq {report.first_bad_seq or '-'}: {report.problem}")
    raise typer.Exit(exits.OK if report.ok else VERIFY_FAILED)


def _api_user(name: str | None) -> audit.OsUser:
    """The OS user named, else the node's service user if it exists, else the one running this."""
    if name is not None:
        return audit.os_user(name)
    try:
        return audit.os_user(NodeSettings().service_user)
    except KeyError:
        return audit.os_user()


@app.command("doctor")
def doctor(
    api_user: Annotated[
        str | None,
        typer.Option(
            "--api-user",
            help="OS user the API runs as; default the service user (AMOS_SERVICE_USER) when "
            "it exists, else the user running this command.",
        ),
    ] = None,
) -> None:
    """Check that the API's OS user can neither read the checkpoint key nor change the sink.

    Exit 0 when both are out of its reach, 1 when it could forge what `verify` trusts.
    """
    settings = audit.AuditSettings()
    try:
        user = _api_user(api_user)
    except KeyError:
        typer.echo(f"error: no OS user {api_user!r}", err=True)
        raise typer.Exit(exits.INVALID) from None
    key = settings.key_path
    if key.exists():
        info = key.stat()
        typer.echo(f"key       {key} (uid {info.st_uid}, mode {info.st_mode & 0o7777:04o})")
    else:
        typer.echo(f"key       {key} (not created yet)")
    typer.echo(f"sink      {settings.sink_path}")
    typer.echo(f"api user  {user.name} (uid {user.uid})")
    problems = audit.key_exposure(settings, user)
    for problem in problems:
        typer.echo(f"problem: {problem}")
    if problems:
        raise typer.Exit(VERIFY_FAILED)
    typer.echo(f"ok: {user.name} can neither read the checkpoint key nor change the sink")


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign the chain's current tail now, creating the install's key on first use."""
    settings = audit.AuditSettings()
    try:
        signer, sink = _signing(settings)
        with _store() as store:
            written = audit.Checkpointer(store, signer, sink).checkpoint()
    except AmosError as err:
        raise fail(err) from None
    if written is None:
        typer.echo("nothing to checkpoint: the chain is empty or its tail is already signed")
    else:
        typer.echo(f"checkpoint at seq {written.seq} written to {settings.sink_path}")


@app.command("checkpointer")
def checkpointer(
    poll: Annotated[
        float | None,
        typer.Option("--poll", min=0.01, help="Seconds between looks at the tail; default ≤ 1."),
    ] = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as-user",
            help="Started as root: read the key and open the sink, then run as this user.",
        ),
    ] = None,
) -> None:
    """Sign the tail every N records or T seconds until SIGTERM/SIGINT, then sign what is left.

    Run it as the OS user that owns checkpoint.key and the sink, not as the API's user: the
    processes that write records never hold the key (ADR 0019). A root node starts it as
    root with --as-user: it loads the key and opens the sink, then becomes that user, so it
    never opens the database as root and its memory is not readable by the user (ADR 0049).
    """
    _logging()
    settings = audit.AuditSettings()
    with _stop_on_signals() as stop:
        try:
            signer = audit.CheckpointSigner.from_file(settings.key_path)
            sink = audit.JsonlSink(settings.sink_path)
            if as_user is not None:
                sink.keep_open()
                _become(ensure_service_user(as_user), settings)
            with _store() as store:
                signing = audit.Checkpointer(
                    store,
                    signer,
                    sink,
                    every_records=settings.audit_checkpoint_records,
                    every_seconds=settings.audit_checkpoint_seconds,
                )
                every = poll or poll_interval(settings.audit_checkpoint_seconds)
                typer.echo(
                    f"audit checkpointer: every {settings.audit_checkpoint_records} records or "
                    f"{settings.audit_checkpoint_seconds:g} s, key {signer.key_id}, "
                    f"sink {settings.sink_path}",
                    err=True,
                )
                _run_until_stopped(lambda event: audit.run_checkpoints(signing, event, every), stop)
        except AmosError as err:
            raise fail(err) from None
        except RuntimeError as err:  # no such user to become
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(VERIFY_FAILED) from None
    typer.echo("audit checkpointer stopped", err=True)


def _export_to(out: TextIO, export_format: ExportFormat, filters: dict[str, Any]) -> int:
    with _store() as store, store.session(read_only=True) as session:
        if export_format is ExportFormat.cef:
            return audit.export_cef(session, out, **filters)
        return audit.export_jsonl(session, out, **filters)


@app.command("export")
def export(  # noqa: PLR0917 - Typer passes every option as an argument
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl: canonical, re-hashable; cef: CEF.")
    ] = ExportFormat.jsonl,
    since: Annotated[
        str | None, typer.Option("--since", help="From this ISO date/time (UTC if no offset).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this ISO date/time (exclusive).")
    ] = None,
    folder: Annotated[str | None, typer.Option("--folder", help="Only this folder.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the matching records oldest first, one line each."""
    filters = {
        "since": _moment(since, "--since"),
        "until": _moment(until, "--until"),
        "folder": folder,
        "actor": actor,
        "action": action,
    }
    try:
        if output is None:
            _export_to(sys.stdout, export_format, filters)
            return
        with output.open("w", encoding="utf-8") as out:
            written = _export_to(out, export_format, filters)
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"exported {written} records to {output}", err=True)


@app.command("ship")
def ship(
    once: Annotated[bool, typer.Option("--once", help="Ship what is pending, then exit.")] = False,
) -> None:
    """Ship records to the SIEM in AMOS_AUDIT_SIEM_URL until SIGTERM/SIGINT (off when unset).

    The URL's host must also be listed in AMOS_AUDIT_SIEM_ALLOW; the cursor file remembers
    the last record shipped, so a restart resumes after it.
    """
    _logging()
    settings = audit.AuditSettings()
    with _stop_on_signals() as stop:
        try:
            with _store() as store:
                forwarder = audit.SiemForwarder(store, settings)
                if not forwarder.enabled:
                    typer.echo("SIEM shipping is off: AMOS_AUDIT_SIEM_URL is not set", err=True)
                    return
                if once:
                    shipped = forwarder.ship_pending()
                    forwarder.close()
                    typer.echo(f"shipped {shipped} records to {forwarder.destination}")
                    return
                typer.echo(
                    f"shipping the audit trail to {forwarder.destination} as "
                    f"{settings.audit_siem_format}, after seq {forwarder.cursor()}",
                    err=True,
                )
                _run_until_stopped(forwarder.run_forever, stop)
        except AmosError as err:
            raise fail(err) from None
    typer.echo("SIEM shipping stopped", err=True)


@app.command("prune")
def prune(
    before: Annotated[
        str | None,
        typer.Option("--before", help="Remove records older than this ISO date/time (UTC)."),
    ] = None,
    older_than_days: Annotated[
        int | None,
        typer.Option("--older-than-days", min=0, help="Remove records older than N days."),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who to record.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Remove the oldest records, stopping at the first one under a legal hold.

    When SIEM shipping is configured, records not yet shipped are kept.
    """
    if (before is None) == (older_than_days is None):
        typer.echo("error: give exactly one of --before and --older-than-days", err=True)
        raise typer.Exit(exits.INVALID)
    now = datetime.now(UTC)
    cut = _moment(before, "--before") or now - timedelta(days=older_than_days or 0)
    settings = audit.AuditSettings()
    try:
        signer, sink = _signing(settings)
        with _store() as store:
            shipped = None
            if settings.audit_siem_url:
                shipped = audit.SiemForwarder(store, settings).cursor()
            report = audit.prune(
                store,
                before=cut,
                signer=signer,
                sink=sink,
                now=now,
                actor=actor or os_actor(),
                max_seq=shipped,
            )
    except AmosError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    elif report.deleted:
        typer.echo(
            f"pruned {report.deleted} records (seq {report.first_seq}..{report.through_seq}); "
            f"stopped: {report.stopped_by}"
        )
    else:
        typer.echo(f"nothing to prune: {report.stopped_by}")


@app.command("adopt-anchor")
def adopt_anchor(
    reason: Annotated[
        str, typer.Option("--reason", help="Why the anchor is trusted (a ticket, who checked).")
    ],
    actor: Annotated[str | None, typer.Option("--actor", help="Who to record.")] = None,
) -> None:
    """Vouch for a retention anchor no signed prune leads to (a prune made before ADR 0048).

    Only for a chain pruned before prunes were signed, after checking its history and the
    SIEM or export copies: `verify` cannot tell such a prune from a head cut off by someone
    with the database. The adoption is signed and recorded in the chain.
    """
    try:
        signer, sink = _signing(audit.AuditSettings())
        with _store() as store:
            seq = audit.adopt_anchor(
                store, reason=reason, actor=actor or os_actor(), signer=signer, sink=sink
            )
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"anchor adopted; recorded at seq {seq}")


@hold_app.command("add")
def hold_add(
    folder: Annotated[str, typer.Option("--folder", help="Folder to hold; * holds every one.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (a case or ticket).")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who to record.")] = None,
) -> None:
    """Stop retention from removing any record of a folder until the hold is released."""
    try:
        signer, sink = _signing(audit.AuditSettings())
        with _store() as store:
            hold_id = audit.place_hold(
                store,
                folder=folder,
                reason=reason,
                actor=actor or os_actor(),
                signer=signer,
                sink=sink,
            )
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"hold {hold_id} placed on folder {folder}")


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[int, typer.Argument(help="The hold's id (see `amos audit hold ls`).")],
    actor: Annotated[str | None, typer.Option("--actor", help="Who to record.")] = None,
) -> None:
    """Release a hold; retention may then remove the folder's old records again."""
    try:
        signer, sink = _signing(audit.AuditSettings())
        with _store() as store:
            released = audit.release_hold(
                store, hold_id, actor=actor or os_actor(), signer=signer, sink=sink
            )
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"hold {released.id} on folder {released.folder} released")


@hold_app.command("ls")
def hold_ls(
    include_released: Annotated[
        bool, typer.Option("--all", help="Include released holds.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List the active holds (with --all, released ones too), oldest first."""
    try:
        with _store() as store:
            holds = audit.list_holds(store, include_released=include_released)
    except AmosError as err:
        raise fail(err) from None
    for hold in holds:
        if as_json:
            typer.echo(json.dumps(asdict(hold) | {"active": hold.active}, default=str))
            continue
        state = "active" if hold.active else f"released {hold.released_at:%Y-%m-%d %H:%M}"
        typer.echo(
            f"{hold.id}\t{hold.folder}\t{state}\t{hold.created_by}\t"
            f"{hold.created_at:%Y-%m-%d %H:%M}\t{hold.reason}"
        )


if __name__ == "__main__":  # the node starts its checkpointer and shipper with these alone
    app()
