"""Process-wide redaction: no log line, exception text or traceback shows a secret in use.

A step that resolves secrets opens a ``step()`` scope (the worker around every activity, the
runner agent around every job); the resolver ``hold``s each value it hands out, and the scope
forgets them when the step ends, so values live in this registry exactly as long as in the
step. ``RedactionFilter``, installed on the handlers of each process (``install``), masks
every held value in each record's message, arguments, exception text and stack before any
handler formats it. See decision 0031.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable, Iterator

_T = TypeVar("_T")
MASK = "***"
#: Shorter values would mask ordinary words and numbers all over the logs; the action
#: wrapper still masks them in the step's own errors and outputs.
MIN_LENGTH = 4

_lock = threading.Lock()
_held: Counter[str] = Counter()
_scope: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "amos_redaction_scope", default=None
)


def hold(value: str) -> None:
    """Mask ``value`` in every log record until the current step scope ends.

    Outside a scope nothing is registered: a value must never outlive its step here.
    """
    held = _scope.get()
    if held is None or len(value) < MIN_LENGTH:
        return
    with _lock:
        _held[value] += 1
    held.append(value)


@contextlib.contextmanager
def step(values: Iterable[str] = ()) -> Iterator[None]:
    """A scope for one step: values held inside it (and ``values``) are forgotten at its end."""
    held: list[str] = []
    token = _scope.set(held)
    try:
        for value in values:
            hold(value)
        yield
    finally:
        _scope.reset(token)
        with _lock:
            for value in held:
                _held[value] -= 1
                if _held[value] <= 0:
                    del _held[value]
        held.clear()


def in_use() -> list[str]:
    """The values held now, longest first (so a value containing another is masked whole)."""
    with _lock:
        return sorted(_held, key=len, reverse=True)


def mask(text: str, values: list[str] | None = None) -> str:
    """``text`` with every held value (or every one of ``values``) replaced by the mask."""
    for value in in_use() if values is None else values:
        text = text.replace(value, MASK)
    return text


class RedactionFilter(logging.Filter):
    """Masks the secrets in use in a record; never drops a record.

    The message is rendered (``msg % args``) and masked, and an exception or stack is
    formatted now and masked, so no handler later renders the raw value from the objects.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask ``record`` in place."""
        values = in_use()
        if not values:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg} {record.args}"
        record.msg, record.args = mask(message, values), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, values)
            record.exc_info = None  # a handler would format the raw traceback again
        if record.stack_info:
            record.stack_info = mask(record.stack_info, values)
        return True


_FILTER = RedactionFilter()


def install() -> None:
    """Put the filter on every handler of this process: the root's, each logger's, last resort.

    Call it after the process has configured logging; calling it again is harmless.
    """
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactionFilter) for f in handler.filters):
            handler.addFilter(_FILTER)


def log_config(level: str = "WARNING") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document whose one handler (stderr) has the filter.

    For processes whose logging is configured from outside, such as uvicorn's
    ``--log-config``: the node's API starts with it.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": f"{__name__}.RedactionFilter"}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            name: {"level": level, "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


async def run_step(work: Awaitable[_T], values: Iterable[str] = ()) -> _T:
    """Await ``work`` inside its own step scope (for a task: the scope is the task's own)."""
    with step(values):
        return await work
