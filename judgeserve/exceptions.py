"""Every error judgeserve raises on purpose, in one hierarchy::

    JudgeserveError
    ├── ConfigError            bad settings, rubric or rule files (names file/line/field)
    ├── ClientError            raised by the SDK
    │   ├── APIError           the API answered with an error status (.status, .detail, .samples)
    │   └── JournalError       a line of the SDK's journal could not be read back
    ├── QueueError             Redis is unreachable or misconfigured
    ├── Backpressure           too many samples wait to be scored: retry later (HTTP 429)
    ├── StoreError             the database refused a write (bad data: retrying will not help)
    │   └── StoreUnavailable   the database is unreachable or locked now (retry later)
    ├── ScorerError            a scorer failed on a sample (the worker retries, then dead-letters)
    │   └── IndexFileError     a memorization index is missing or corrupt
    ├── GeneratorError         the generator's engine failed on a job (worth retrying)
    ├── CheckpointError        a submitted checkpoint cannot be used (retrying will not help)
    │   └── CheckpointMissingError  its folder is gone ("checkpoint folder gone: ...")
    ├── NotComparableError     two checkpoints cannot be compared probe by probe (.field says which)
    ├── NotLearnt              training a judge ran out of steps before its verdicts came out right
    └── MissingExtraError      an optional dependency is not installed (says what to pip install)

HTTP responses are made from these in exactly one place: ``judgeserve.app``.
``RETRYABLE_STATUS`` is the one list of HTTP statuses that mean "try again later", for
every sender (the SDK's delivery agent, the webhook notifier).
"""

from __future__ import annotations

__all__ = [
    "JudgeserveError",
    "ConfigError",
    "ClientError",
    "APIError",
    "JournalError",
    "QueueError",
    "Backpressure",
    "StoreError",
    "StoreUnavailable",
    "ScorerError",
    "IndexFileError",
    "GeneratorError",
    "CheckpointError",
    "CheckpointMissingError",
    "NotComparableError",
    "NotLearnt",
    "MissingExtraError",
    "RETRYABLE_STATUS",
    "require",
]

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class JudgeserveError(Exception):
    """Base class of every error judgeserve raises on purpose."""


class ConfigError(JudgeserveError):
    """A settings value, rubric or alert-rule file is invalid."""


class ClientError(JudgeserveError):
    """The SDK could not do what was asked."""


class APIError(ClientError):
    """The API answered with an error status."""

    def __init__(self, status: int, detail: object, samples: list[str] | None = None) -> None:
        which = f" (samples {', '.join(map(str, samples))})" if samples else ""
        super().__init__(f"HTTP {status}{which}: {detail}")
        self.status = status
        self.detail = detail
        self.samples = samples or []  # ids of the samples this refusal concerns


class JournalError(ClientError):
    """A line of the SDK's journal could not be read back (a torn write): what it held
    was never delivered."""


class QueueError(JudgeserveError):
    """Redis is unreachable or the stream is misconfigured."""


class Backpressure(JudgeserveError):
    """The stream's backlog is over its bound: the client should retry later."""

    def __init__(self, backlog: int, bound: int, retry_after: int = 2) -> None:
        super().__init__(f"backlog {backlog} exceeds {bound}")
        self.backlog = backlog
        self.bound = bound
        self.retry_after = retry_after


class StoreError(JudgeserveError):
    """The database refused a query or is unreachable."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (down, restarting, a locked SQLite file): the
    same write may succeed later, so workers wait and retry instead of dead-lettering, and
    the API answers 503 with ``Retry-After``."""


class ScorerError(JudgeserveError):
    """A scorer failed on a sample."""


class IndexFileError(ScorerError):
    """A memorization index file is missing or corrupt."""


class GeneratorError(JudgeserveError):
    """The generator's engine failed on a job; the job may succeed when retried."""


class CheckpointError(JudgeserveError):
    """A submitted checkpoint cannot be used (wrong kind, unreadable, for another base
    model); retrying the job will not help, so it is dead-lettered with this message."""


class CheckpointMissingError(CheckpointError):
    """The checkpoint's folder (or URL) no longer exists, e.g. the trainer's
    ``save_total_limit`` deleted it before the generator got to it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"checkpoint folder gone: {path} (deleted by save_total_limit?)")
        self.path = path


class NotComparableError(JudgeserveError):
    """Two checkpoints cannot be compared probe by probe: no probe ids, or not the same
    probe set. ``field`` names the side the message is about (``a`` or ``b``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotLearnt(JudgeserveError):
    """Training a judge ran out of steps before every verdict it was checked on came out
    right (the toy judge starts over from another initialisation when it sees this)."""


class MissingExtraError(JudgeserveError, ImportError):
    """An optional dependency is missing; the message names the pip command to run."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module!r} is not installed; run: pip install 'judgeserve[{extra}]'"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str) -> object:
    """Import an optional module or raise :class:`MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(module, extra) from e
