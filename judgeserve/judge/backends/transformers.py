"""Judge on a Hugging Face causal LM in-process: CPU or GPU, batched padded forward passes.

``lora_path`` applies a PEFT LoRA adapter (one ``judgeserve judge tune`` trained, say),
merged into the weights at load.

``quantize="int8"`` applies PyTorch's dynamic int8 quantization to the linear layers on
CPU (weights stored as int8, activations quantized on the fly): about 4x less weight
memory and faster matmuls on CPUs with VNNI, for a small accuracy cost.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from ...exceptions import ConfigError, require
from ..prompt import JudgePrompt
from ..version import served_model
from .base import TokenUsage, label_token_ids, prompt_text

__all__ = ["TransformersBackend"]

log = logging.getLogger(__name__)


class TransformersBackend:
    """``AutoModelForCausalLM`` + tokenizer; one forward step per prompt batch."""

    name = "transformers"
    reports_usage = True

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        quantize: Literal["int8"] | None = None,
        batch_size: int = 16,
        use_chat_template: bool | None = None,
        threads: int | None = None,
        trust_remote_code: bool = False,
        lora_path: str | None = None,
    ) -> None:
        if not model:
            raise ConfigError("the transformers judge backend needs a model path or name")
        torch: Any = require("torch", "judge")
        transformers: Any = require("transformers", "judge")
        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.base_model = model
        # A LoRA adapter makes a judge of its own: the model it reports names the adapter.
        self.model = served_model(model, lora_path)
        self.device = device
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            model, trust_remote_code=trust_remote_code
        )
        # Left padding keeps every prompt's last token in the last column, which is where
        # the next-token distribution is read (and where generation continues).
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = _dtype(torch, dtype, device, quantize)
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            model, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        if lora_path:
            peft: Any = require("peft", "judge")
            # Merged into the weights: scoring then costs what the base model costs.
            lm = peft.PeftModel.from_pretrained(lm, lora_path).merge_and_unload()
        lm.eval()
        if quantize == "int8":
            if device != "cpu":
                raise ConfigError(
                    "quantize='int8' is dynamic quantization for CPU; use device='cpu'"
                )
            lm = _quantize_int8(torch, lm)
        elif quantize is not None:
            raise ConfigError(f"unknown quantize={quantize!r}; supported: 'int8'")
        self.lm = lm.to(device)
        self._label_ids: dict[tuple[str, ...], dict[str, list[int]]] = {}

    def _ids_for(self, labels: tuple[str, ...]) -> dict[str, list[int]]:
        if labels not in self._label_ids:
            self._label_ids[labels] = label_token_ids(self.tokenizer, labels)
        return self._label_ids[labels]

    def _encode(self, prompts: Sequence[JudgePrompt]) -> Any:
        texts = [prompt_text(p, self.tokenizer, self.use_chat_template) for p in prompts]
        # A chat template already wrote BOS; don't let the tokenizer add a second one.
        chat = self.use_chat_template
        if chat is None:
            chat = bool(getattr(self.tokenizer, "chat_template", None))
        return self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not chat
        ).to(self.device)

    def _chunks(self, prompts: Sequence[JudgePrompt]) -> list[list[int]]:
        # Batch prompts of similar length together: less padding, less wasted compute.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].user))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def label_probs(
        self, prompts: Sequence[JudgePrompt], usage: Sequence[TokenUsage] | None = None
    ) -> list[dict[str, float] | None]:
        torch = self._torch
        out: list[dict[str, float] | None] = [None] * len(prompts)
        for chunk in self._chunks(prompts):
            batch = [prompts[i] for i in chunk]
            enc = self._encode(batch)
            mask = enc["attention_mask"]
            if usage is not None:
                for row, i in enumerate(chunk):
                    usage[i].prompt_tokens += int(mask[row].sum())
                    usage[i].generated_tokens += 1
            # Positions count real tokens only, so left padding does not shift them.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.lm(
                    input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions
                ).logits[:, -1, :]
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(chunk):
                ids = self._ids_for(prompts[i].labels)
                out[i] = {lab: float(probs[row, toks].sum()) for lab, toks in ids.items()}
        return out

    def generate(
        self,
        prompts: Sequence[JudgePrompt],
        max_tokens: int = 8,
        usage: Sequence[TokenUsage] | None = None,
    ) -> list[str]:
        torch = self._torch
        out = [""] * len(prompts)
        for chunk in self._chunks(prompts):
            enc = self._encode([prompts[i] for i in chunk])
            with torch.inference_mode():
                generated = self.lm.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = generated[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            if usage is not None:
                for row, i in enumerate(chunk):
                    usage[i].prompt_tokens += int(enc["attention_mask"][row].sum())
                    usage[i].generated_tokens += _generated_length(
                        new[row].tolist(), self.tokenizer.pad_token_id
                    )
            for i, text in zip(chunk, texts, strict=True):
                out[i] = text
        return out

    def close(self) -> None:
        self.lm = None


def _generated_length(tokens: list[int], pad_id: int | None) -> int:
    """Tokens a row generated: up to and with its first end (the padding after it is not;
    the end token is often the pad token too)."""
    if pad_id is not None and pad_id in tokens:
        return tokens.index(pad_id) + 1
    return len(tokens)


def _dtype(torch: Any, dtype: str, device: str, quantize: str | None) -> Any:
    if quantize or dtype == "float32" or (dtype == "auto" and device == "cpu"):
        # CPU matmuls are fastest and exact in float32; dynamic quantization needs it too.
        return torch.float32
    if dtype == "auto":
        return torch.bfloat16
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ConfigError(f"unknown dtype {dtype!r}") from None


def _quantize_int8(torch: Any, lm: Any) -> Any:
    from torch.ao import quantization

    quantize_dynamic: Any = quantization.quantize_dynamic

    # torch.ao.quantization and quantized tensors are deprecated in favour of torchao,
    # which is not a dependency here; the eager API still works and is what a CPU-only box
    # has. Silence exactly those two notices.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated")
        quantized = quantize_dynamic(lm, {torch.nn.Linear}, dtype=torch.qint8)
    log.info("quantized %s linear layers to int8", sum(1 for _ in quantized.modules()))
    return quantized
