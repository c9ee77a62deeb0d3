"""The generator Protocol, its job and result models, and its plug-in registry.

A generator takes a :class:`GenerationJob` (a checkpoint: a LoRA adapter folder or a full
model folder, the probes and the :class:`~judgeserve.probes.GenerationConfig`) and returns
a :class:`GenerationResult`: one :class:`~judgeserve.probes.Completion` per probe and
draw, with the :class:`GeneratorIdentity` that says which engine, base model, checkpoint
and decoding settings made them.

Built-in generators register through the ``judgeserve.generators`` entry-point group,
exactly as a user's package would; :func:`register_generator` adds one at run time.
"""

from __future__ import annotations

import logging
import pkgutil
from collections import OrderedDict
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..exceptions import CheckpointError, ConfigError
from ..probes import Completion, GenerationConfig, Probe

__all__ = [
    "ENTRY_POINT_GROUP",
    "CheckpointKind",
    "GenerationJob",
    "GeneratorIdentity",
    "GenerationResult",
    "Generator",
    "GeneratorFactory",
    "register_generator",
    "generator_names",
    "load_generator",
    "AdapterSlots",
    "check_base_model",
    "timed_result",
]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "judgeserve.generators"
CheckpointKind = Literal["lora", "full"]


class GenerationJob(BaseModel):
    """What to generate: the probes' completions by one checkpoint."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(
        min_length=1,
        description="Folder the trainer saved (a PEFT adapter folder for 'lora', a model "
        "folder for 'full'): a local / shared-filesystem path or an fsspec URL (s3://...).",
    )
    kind: CheckpointKind = Field("lora", description="'lora': a PEFT adapter; 'full': all weights.")
    base_model: str | None = Field(
        None,
        description="Base model the adapter was trained on; must be the one the generator "
        "hosts (None: whatever it hosts).",
    )
    probes: list[Probe] = Field(min_length=1, description="The probes to complete.")
    config: GenerationConfig = Field(
        default_factory=GenerationConfig, description="Decoding settings of the probe set."
    )

    @field_validator("probes")
    @classmethod
    def _unique_ids(cls, probes: list[Probe]) -> list[Probe]:
        ids = [p.id for p in probes]
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"probe ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}"
            )
        return probes


class GeneratorIdentity(BaseModel):
    """Which generator made a set of completions: recorded with every sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field(description="Generator backend, e.g. 'vllm' or 'transformers'.")
    engine: str = Field(description="Engine library and version, e.g. 'vllm 0.32.0'.")
    base_model: str = Field(description="The base model the generator hosts.")
    checkpoint: str = Field(description="The checkpoint as submitted (path or URL).")
    kind: CheckpointKind = Field(description="'lora' or 'full'.")
    decoding: str = Field(description="GenerationConfig.decoding_hash() of the settings used.")


class GenerationResult(BaseModel):
    """The completions of one job, and how long loading and generating took."""

    model_config = ConfigDict(extra="forbid")

    identity: GeneratorIdentity = Field(description="Which generator made the completions.")
    completions: list[Completion] = Field(
        description="One per probe and draw: draws in config.draws() order, each over the "
        "probes in job order (as probes.generate returns them)."
    )
    load_s: float = Field(description="Seconds spent fetching / loading / swapping the checkpoint.")
    generate_s: float = Field(description="Seconds spent decoding.")


@runtime_checkable
class Generator(Protocol):
    """What the generation worker needs from an engine hosting a policy's base model."""

    name: str  # backend kind, e.g. "vllm"
    base_model: str  # the hosted base model, recorded in every GeneratorIdentity

    def generate(self, job: GenerationJob) -> GenerationResult:
        """Complete every probe of ``job`` with its checkpoint's weights.

        Raises :class:`~judgeserve.exceptions.CheckpointMissingError` when the checkpoint is
        gone, :class:`~judgeserve.exceptions.CheckpointError` when it is unusable, and
        :class:`~judgeserve.exceptions.GeneratorError` when the engine failed.
        """
        ...

    def close(self) -> None:
        """Free the engine."""
        ...


GeneratorFactory = Callable[..., Generator]
_registry: dict[str, GeneratorFactory] = {}


def register_generator(name: str, factory: GeneratorFactory) -> None:
    """Register a factory ``factory(base_model=None, **options)`` under ``name``."""
    _registry[name] = factory


def _discover() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _registry:
            # Keep the entry point unloaded until used: vLLM/torch imports cost seconds.
            _registry[ep.name] = _lazy(ep.value)


def _lazy(ref: str) -> GeneratorFactory:
    def factory(*args: Any, **kwargs: Any) -> Generator:
        generator: Generator = pkgutil.resolve_name(ref)(*args, **kwargs)
        return generator

    return factory


def generator_names() -> list[str]:
    """Every registered generator name."""
    _discover()
    return sorted(_registry)


def load_generator(name: str, base_model: str | None = None, **options: Any) -> Generator:
    """Instantiate the generator registered as ``name``."""
    _discover()
    try:
        factory = _registry[name]
    except KeyError:
        raise ConfigError(
            f"unknown generator {name!r}; registered: {', '.join(sorted(_registry))}"
        ) from None
    return factory(base_model, **options)


# --- helpers the local backends share ----------------------------------------------------


def timed_result(
    generator: Any, job: GenerationJob, completions: list[Completion], started: float, loaded: float
) -> GenerationResult:
    """The result of ``job``, timed from ``started`` (before fetching the checkpoint) and
    ``loaded`` (weights in place); ``generator`` has ``name``, ``engine``, ``base_model``."""
    import time

    return GenerationResult(
        identity=GeneratorIdentity(
            backend=generator.name,
            engine=generator.engine,
            base_model=generator.base_model,
            checkpoint=job.checkpoint,
            kind=job.kind,
            decoding=job.config.decoding_hash(),
        ),
        completions=completions,
        load_s=loaded - started,
        generate_s=time.perf_counter() - loaded,
    )


def check_base_model(job: GenerationJob, hosted: str) -> None:
    """A LoRA job naming another base model than the hosted one cannot run here."""
    if job.kind != "lora" or not job.base_model or _same_model(job.base_model, hosted):
        return
    raise CheckpointError(
        f"checkpoint {job.checkpoint} is an adapter for base model {job.base_model!r}, but "
        f"this generator hosts {hosted!r}"
    )


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


class AdapterSlots:
    """Which LoRA adapters an engine holds: at most ``capacity``, least recently used first
    out. Each adapter (by checkpoint key) keeps one integer id for the life of the engine,
    never given to another adapter: vLLM caches adapters by that id."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError("max_adapters must be at least 1")
        self.capacity = capacity
        self._ids: dict[str, int] = {}
        self._loaded: OrderedDict[str, int] = OrderedDict()

    def use(self, key: str) -> tuple[int, bool, list[int]]:
        """(id of ``key``, whether it must be loaded, ids to unload to make room)."""
        adapter_id = self._ids.setdefault(key, len(self._ids) + 1)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return adapter_id, False, []
        evicted = []
        while len(self._loaded) >= self.capacity:
            _, old = self._loaded.popitem(last=False)
            evicted.append(old)
        self._loaded[key] = adapter_id
        return adapter_id, True, evicted

    def forget(self, key: str) -> None:
        """``key`` failed to load: it is not held."""
        self._loaded.pop(key, None)

    def clear(self) -> None:
        """The engine dropped every adapter (restarted)."""
        self._loaded.clear()

    @property
    def loaded(self) -> list[int]:
        """Ids held now, least recently used first."""
        return list(self._loaded.values())
