"""The generator on transformers, for CPU-only users (GPU works too); LoRA through PEFT.

The base model is loaded once. LoRA checkpoints load into it as named PEFT adapters
(``PeftModel`` for the first, ``load_adapter`` after) and are switched with
``set_adapter``; at most ``max_adapters`` are held, the least recently used deleted
first. A full checkpoint is a model of its own, loaded fresh (with its own tokenizer
when it saved one); the last one stays loaded, so re-generating it costs no reload.

Decoding is :func:`judgeserve.probes.generate`, the same code the trainer callbacks run:
greedy and seeded sampled draws, batched with left padding, so re-generating a
checkpoint gives the same completions.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..exceptions import CheckpointError, ConfigError, GeneratorError, JudgeserveError, require
from ..probes import generate
from .base import AdapterSlots, GenerationJob, GenerationResult, check_base_model, timed_result
from .checkpoints import LocalCheckpoint, resolve_checkpoint

__all__ = ["TransformersGenerator"]

log = logging.getLogger(__name__)


class TransformersGenerator:
    """A transformers causal LM hosting ``base_model``; PEFT adapters hot-swapped."""

    name = "transformers"

    def __init__(
        self,
        base_model: str | None = None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
        max_adapters: int = 4,
        cache_dir: str | Path | None = None,
    ) -> None:
        if not base_model:
            raise ConfigError("the transformers generator needs base_model (a path or model name)")
        transformers: Any = require("transformers", "generator")
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.base_model = base_model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.engine = f"transformers {transformers.__version__}"
        self._lock = threading.Lock()
        self._slots = AdapterSlots(max_adapters)
        self._names: dict[int, str] = {}  # adapter id -> PEFT adapter name
        self._peft: Any = None  # the PeftModel around the base, once an adapter is loaded
        self._full: tuple[str, Any, Any] | None = None  # (key, model, tokenizer)
        self.model = self._load_model(base_model)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(base_model)

    def _load_model(self, source: str) -> Any:
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"dtype": self.dtype} if self.dtype else {}
        model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        return model.to(self.device).eval()

    def _adapter(self, ckpt: LocalCheckpoint) -> Any:
        peft: Any = require("peft", "generator")
        ckpt.config()  # readable, or a CheckpointError that says so
        adapter_id, load, evicted = self._slots.use(ckpt.key)
        name = self._names.setdefault(adapter_id, f"ckpt-{adapter_id}")
        if load:
            try:
                if self._peft is None:
                    self._peft = peft.PeftModel.from_pretrained(
                        self.model, str(ckpt.path), adapter_name=name
                    )
                else:
                    self._peft.load_adapter(str(ckpt.path), adapter_name=name)
            except Exception as e:
                self._slots.forget(ckpt.key)
                self._undo_failed_load(name)
                raise ckpt.gone() or CheckpointError(
                    f"PEFT could not load adapter {ckpt.source}: {e}"
                ) from e
            self._peft.to(self.device).eval()
        self._peft.set_adapter(name)
        for old in evicted:  # after set_adapter: PEFT will not delete the active adapter
            self._peft.delete_adapter(self._names[old])
        return self._peft

    def _undo_failed_load(self, name: str) -> None:
        """A load that failed half-way leaves PEFT layers or config behind: clean them up."""
        if self._peft is None:
            # PeftModel.from_pretrained had begun changing the base model in place.
            self.model = self._load_model(self.base_model)
        elif name in self._peft.peft_config:
            self._peft.delete_adapter(name)

    def _full_model(self, ckpt: LocalCheckpoint) -> tuple[Any, Any]:
        from transformers import AutoTokenizer

        if self._full is None or self._full[0] != ckpt.key:
            ckpt.config()  # readable, or a CheckpointError that says so
            self._full = None  # free the previous one before loading the next
            try:
                model = self._load_model(str(ckpt.path))
            except MemoryError:
                raise
            except Exception as e:  # unreadable, torn or foreign weights
                raise ckpt.gone() or CheckpointError(
                    f"cannot load full checkpoint {ckpt.source}: {e}"
                ) from e
            has_tokenizer = any(
                (ckpt.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
            )
            tok = AutoTokenizer.from_pretrained(ckpt.path) if has_tokenizer else self.tokenizer
            self._full = (ckpt.key, model, tok)
        return self._full[1], self._full[2]

    def generate(self, job: GenerationJob) -> GenerationResult:
        check_base_model(job, self.base_model)
        config = job.config
        if self.batch_size:
            config = config.model_copy(update={"batch_size": self.batch_size})
        with self._lock:
            started = time.perf_counter()
            ckpt = resolve_checkpoint(job.checkpoint, job.kind, cache_dir=self.cache_dir)
            try:
                if job.kind == "lora":
                    model, tok = self._adapter(ckpt), self.tokenizer
                else:
                    model, tok = self._full_model(ckpt)
                loaded = time.perf_counter()
                completions = generate(model, tok, job.probes, config)
            except JudgeserveError:
                raise
            except Exception as e:
                raise ckpt.gone() or GeneratorError(
                    f"transformers failed on {job.checkpoint}: {e}"
                ) from e
        return timed_result(self, job, completions, started, loaded)

    def close(self) -> None:
        with self._lock:
            self._peft = self._full = None
            self.model = None
