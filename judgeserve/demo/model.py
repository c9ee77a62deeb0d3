"""A tiny causal LM trained from scratch on CPU: the demo's model, also used by tests.

No weights are downloaded: a byte-level BPE tokenizer is trained on the corpus with
``tokenizers``, saved and loaded back through ``AutoTokenizer``, and a 3-layer,
128-wide GPT-2 is built from its config (2 heads of 64: vLLM's CPU attention rejects
head_dim 16, should anyone serve it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import require

__all__ = ["train_tokenizer", "tiny_gpt2", "TextDataset", "collate"]

EOS, PAD, UNK = "<eos>", "<pad>", "<unk>"


def train_tokenizer(texts: Sequence[str], out_dir: str | Path, vocab_size: int = 800) -> Any:
    """Train a byte-level BPE on ``texts``, save it to ``out_dir`` and load it back."""
    require("tokenizers", "train")
    require("transformers", "train")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    fast.save_pretrained(str(out_dir))
    return AutoTokenizer.from_pretrained(str(out_dir))


def tiny_gpt2(tokenizer: Any, layers: int = 3, width: int = 128, seed: int = 0) -> Any:
    """A freshly initialised GPT-2 (``layers`` x ``width``, head_dim 64) for ``tokenizer``."""
    require("transformers", "train")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=width,
        n_layer=layers,
        n_head=max(width // 64, 1),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)  # type: ignore[no-untyped-call]


class TextDataset:
    """Tokenized training texts, each ending in the end-of-sequence token."""

    def __init__(self, texts: Sequence[str], tokenizer: Any) -> None:
        self.ids = [tokenizer(t + tokenizer.eos_token)["input_ids"] for t in texts]
        self.pad_id = tokenizer.pad_token_id

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[i]}


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    import torch

    length = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for i, b in enumerate(batch):
        ids[i, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
        mask[i, : len(b["input_ids"])] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
