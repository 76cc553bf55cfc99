"""The runner agent's composition root: ``amos-runner enroll`` and ``amos-runner start``.

The same two commands as ``amos runner enroll|start``, without the rest of the ``amos`` CLI,
so a runner host needs only the runner's packages (``requirements/runner.txt``). Settings
come from the environment here and are passed in: ``AMOS_HOME`` places the runner's
directory and its artifact store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from amosflow.config import EngineSettings
from amosflow.errors import AmosError, AuthenticationError
from amosflow.runner.agent import Agent, RunnerIdentity, enroll, serve

# The codes `amos runner` exits with for the same outcomes (cli/exits.py); the runner host
# has no `amos` CLI to borrow them from.
OK, FAILED, REFUSED = 0, 1, 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amos-runner", description="An outbound-only AMOS FLOW runner."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    directory = argparse.ArgumentParser(add_help=False)
    directory.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="Where the runner keeps its key and certificate (default: $AMOS_HOME/runner).",
    )
    joining = commands.add_parser(
        "enroll",
        parents=[directory],
        help="Swap a one-time token for a client certificate; the key never leaves this host.",
    )
    joining.add_argument("--url", required=True, help="The control plane's API base URL.")
    joining.add_argument("--token", required=True, help="The one-time enrollment token.")
    joining.add_argument("--name", default="runner", help="A name for this runner.")
    commands.add_parser(
        "start",
        parents=[directory],
        help="Run jobs for the control plane until Ctrl-C or SIGTERM; listens on no port.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code follows ``amos runner``'s."""
    args = _parser().parse_args(argv)
    settings = EngineSettings()
    directory: Path = args.dir or settings.home / "runner"
    try:
        if args.command == "enroll":
            identity = enroll(args.url, args.token, args.name, directory)
            print(f"enrolled {identity.runner_id} (zone {identity.zone}) -> {identity.endpoint}")  # noqa: T201
            return OK
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        identity = RunnerIdentity.load(directory)
        agent = Agent(identity, settings.artifacts_dir)
    except AmosError as err:
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return REFUSED if isinstance(err, AuthenticationError) else FAILED
    print(f"runner {identity.runner_id} working for {identity.endpoint}", file=sys.stderr)  # noqa: T201
    asyncio.run(serve(agent))
    return OK


if __name__ == "__main__":
    sys.exit(main())
