"""The scorer interface and registry: every detector and judge plugs in here.

A scorer is a pure function of samples: samples in, scores out. It never touches the
queue, the store or the API. Two kinds exist:

* :class:`SampleScorer` scores each sample on its own (``repetition.rep4`` ...).
* :class:`SetScorer` scores the set of samples of one checkpoint (``diversity.*``) and
  may raise checkpoint-level flags (e.g. collapse).

A scorer that cannot run says why through ``skip_reason`` ("no index for run R", "no
reference on these samples", "judge not configured: ..."): the worker records the reason
per run, step and scorer, and the run page and the step endpoint show it, because users
read silence as "all is well". The worker hands a scorer only the samples it did not skip.

Built-in scorers are registered through the same entry-point group a user's package
uses (``[project.entry-points."judgeserve.scorers"]``), or a user may name
``module:attr`` in ``JUDGESERVE_SCORERS``, or call :func:`register` directly.
"""

from __future__ import annotations

import inspect
import logging
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from .exceptions import ConfigError
from .schema import Sample, Score

__all__ = [
    "SampleScorer",
    "SetScorer",
    "SetResult",
    "Flag",
    "AnyScorer",
    "Context",
    "register",
    "load_scorers",
    "registered",
]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "judgeserve.scorers"


@dataclass(frozen=True)
class Context:
    """What the worker knows about a sample beyond the sample itself."""

    rubrics: list[str] | None = None  # the run's rubrics, when the trainer named them
    baseline: str | None = None  # the same probe's completion at the previous checkpoint


class SampleScorer(ABC):
    """Scores samples one by one; batched so vectorised scorers can amortise work."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    #: Set when :meth:`score_in_context` reads ``Context.baseline`` (one query per batch).
    wants_baseline: ClassVar[bool] = False

    @abstractmethod
    def score(self, samples: Sequence[Sample]) -> list[list[Score]]:
        """Return, for each sample in order, its scores (``<name>.<metric>``)."""

    def score_in_context(
        self, samples: Sequence[Sample], contexts: Sequence[Context]
    ) -> list[list[Score]]:
        """What the worker calls; scorers that need the run's context override it."""
        return self.score(samples)

    def skip_reason(self, sample: Sample, context: Context) -> str | None:
        """Why this scorer will not score ``sample``, in words shown to users beside the
        scorer's name (``"no reference on these samples"``), or None when it will.

        Called by the worker for every sample before :meth:`score_in_context`, which then
        gets only the samples not skipped; keep it cheap. The same reason for many samples
        is shown once, with their count."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (models, files)."""


@dataclass
class Flag:
    """A checkpoint-level detection, e.g. ``diversity.collapse``."""

    name: str
    severity: str = "warning"
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class SetResult:
    """What a :class:`SetScorer` says about one checkpoint's samples."""

    metrics: dict[str, float] = field(default_factory=dict)
    flags: list[Flag] = field(default_factory=list)


class SetScorer(ABC):
    """Scores the set of samples generated at one step (diversity, collapse)."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    min_samples: ClassVar[int] = 2

    @abstractmethod
    def score_set(self, samples: Sequence[Sample]) -> SetResult:
        """Return set-level metrics (``<name>.<metric>``) and flags for one checkpoint."""

    def skip_reason(self, samples: Sequence[Sample]) -> str | None:
        """Why this scorer will not score this checkpoint's ``samples`` (shown to users),
        or None when it will; :meth:`score_set` is called only then."""
        if len(samples) < self.min_samples:
            return f"needs {self.min_samples} samples, the step has {len(samples)}"
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (models, files)."""


AnyScorer = SampleScorer | SetScorer
Factory = Callable[[], AnyScorer]

_registry: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Register a scorer factory under its family name (replacing any previous one)."""
    _registry[name] = factory


def _load_object(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    if not attr:
        raise ConfigError(f"scorer reference {ref!r} must look like 'package.module:attr'")
    try:
        return pkgutil.resolve_name(ref)
    except ImportError as e:
        raise ConfigError(f"cannot import scorer module {module!r}: {e}") from e
    except (AttributeError, ValueError) as e:
        raise ConfigError(f"{module!r} has no attribute {attr!r}") from e


def _discover(extra: Iterable[str]) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _registry:
            _registry[ep.name] = ep.load()
    for ref in extra:
        obj = _load_object(ref)
        name = getattr(obj, "name", None)
        if not isinstance(name, str):
            raise ConfigError(f"scorer {ref!r} has no string attribute 'name'")
        _registry[name] = obj


def registered(extra: Iterable[str] = ()) -> dict[str, Factory]:
    """All known scorer factories by name: entry points, ``extra`` refs, :func:`register`."""
    _discover(extra)
    return dict(_registry)


def _make(factory: Factory, settings: Any) -> AnyScorer:
    # A factory that takes ``settings`` gets the worker's own (not the process default).
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if settings is not None and "settings" in params:
        return factory(settings=settings)  # type: ignore[call-arg]
    return factory()


def load_scorers(
    extra: Iterable[str] = (), disabled: Iterable[str] = (), settings: Any = None
) -> list[AnyScorer]:
    """Instantiate every registered scorer except ``disabled`` ones.

    Factories with a ``settings`` parameter are given ``settings`` (the worker's
    :class:`~judgeserve.settings.Settings`).
    """
    off = set(disabled)
    scorers: list[AnyScorer] = []
    for name, factory in sorted(registered(extra).items()):
        if name in off:
            continue
        scorer = _make(factory, settings)
        if not isinstance(scorer, (SampleScorer, SetScorer)):
            raise ConfigError(f"scorer {name!r} is neither a SampleScorer nor a SetScorer")
        scorers.append(scorer)
    log.info("scorers loaded: %s", ", ".join(s.name for s in scorers))
    return scorers
