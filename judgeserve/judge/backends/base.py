"""The judge backend Protocol, its plug-in registry, and token helpers the local backends share.

A backend answers two questions about rendered prompts:

* :meth:`JudgeBackend.label_probs`: after one forward step, how much probability does each
  verdict label get? (``None`` for a prompt when the backend cannot say, e.g. an API that
  offers no logprobs; the caller then falls back to generating.)
* :meth:`JudgeBackend.generate`: greedy text, for the generate-then-parse fallback.

A backend that sets ``reports_usage = True`` also takes ``usage=``, one
:class:`TokenUsage` per prompt, and fills in the tokens each prompt cost (what the run
page's judge cost and ``/metrics`` count). Others are called without it; their prompts'
tokens are then unknown, never guessed.

Built-in backends register through the ``judgeserve.judge_backends`` entry-point group,
exactly as a user's package would; :func:`register_backend` adds one at run time.
"""

from __future__ import annotations

import logging
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from ...exceptions import ConfigError
from ..prompt import JudgePrompt

__all__ = [
    "ENTRY_POINT_GROUP",
    "JudgeBackend",
    "AsyncJudgeBackend",
    "TokenUsage",
    "reports_usage",
    "BackendFactory",
    "register_backend",
    "backend_names",
    "load_backend",
    "label_token_ids",
    "match_label",
    "prompt_text",
]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "judgeserve.judge_backends"


@dataclass
class TokenUsage:
    """What one prompt cost the judge: the tokens it read, the tokens it generated (one
    for a scored prompt: the verdict position; the reply's tokens when generating)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens}


def reports_usage(backend: object) -> bool:
    """Whether ``backend`` takes ``usage=`` (see the module docstring)."""
    return bool(getattr(backend, "reports_usage", False))


@runtime_checkable
class JudgeBackend(Protocol):
    """What the judge needs from a model server."""

    name: str  # backend kind, e.g. "transformers"
    model: str  # model identifier, recorded with every score

    def label_probs(self, prompts: Sequence[JudgePrompt]) -> list[dict[str, float] | None]:
        """Per prompt: label → probability of its first token at the next position."""
        ...

    def generate(self, prompts: Sequence[JudgePrompt], max_tokens: int = 8) -> list[str]:
        """Per prompt: greedy continuation of at most ``max_tokens`` tokens."""
        ...

    def close(self) -> None:
        """Free the model / connections."""
        ...


@runtime_checkable
class AsyncJudgeBackend(JudgeBackend, Protocol):
    """A backend whose engine batches concurrent requests itself (vLLM's ``AsyncLLM``).

    Ray Serve passes each request straight to these coroutines instead of gathering a
    batch first: the engine's continuous batching already merges concurrent callers.
    """

    async def alabel_probs(self, prompts: Sequence[JudgePrompt]) -> list[dict[str, float] | None]:
        """As :meth:`JudgeBackend.label_probs`, awaitable from any event loop."""
        ...

    async def agenerate(self, prompts: Sequence[JudgePrompt], max_tokens: int = 8) -> list[str]:
        """As :meth:`JudgeBackend.generate`, awaitable from any event loop."""
        ...


BackendFactory = Callable[..., JudgeBackend]
_registry: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Register a backend factory ``factory(model=None, **options)`` under ``name``."""
    _registry[name] = factory


def _discover() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _registry:
            # Keep the entry point unloaded until used: vLLM/torch imports cost seconds.
            _registry[ep.name] = _lazy(ep.value)


def _lazy(ref: str) -> BackendFactory:
    def factory(*args: Any, **kwargs: Any) -> JudgeBackend:
        backend: JudgeBackend = pkgutil.resolve_name(ref)(*args, **kwargs)
        return backend

    return factory


def backend_names() -> list[str]:
    """Every registered backend name."""
    _discover()
    return sorted(_registry)


def load_backend(name: str, model: str | None = None, **options: Any) -> JudgeBackend:
    """Instantiate the backend registered as ``name``."""
    _discover()
    try:
        factory = _registry[name]
    except KeyError:
        raise ConfigError(
            f"unknown judge backend {name!r}; registered: {', '.join(sorted(_registry))}"
        ) from None
    return factory(model, **options)


# --- helpers for backends that own a tokenizer ----------------------------------------


def prompt_text(prompt: JudgePrompt, tokenizer: Any, use_chat_template: bool | None = None) -> str:
    """Render a prompt for a local model: its chat template if it has one (or if asked)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        use_chat_template = has_template
    if use_chat_template:
        if not has_template:
            raise ConfigError("use_chat_template=True but the tokenizer has no chat template")

        def apply(messages: list[dict[str, str]]) -> str:
            text: str = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return text

        return prompt.text(apply)
    return prompt.text()


def label_token_ids(tokenizer: Any, labels: Sequence[str]) -> dict[str, list[int]]:
    """Token ids that start each label, with and without a leading space.

    After ``Score:`` a BPE model usually emits ``" 5"`` while a SentencePiece model may
    emit ``"5"``; both spellings count for the label. Labels must not share a first
    token, or one step could not tell them apart.
    """
    ids: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for label in labels:
        found: list[int] = []
        for spelling in (label, " " + label):
            tokens = tokenizer.encode(spelling, add_special_tokens=False)
            if not tokens:
                continue
            first = tokens[0]
            piece = tokenizer.decode([first]).strip()
            # A bare-space first token would say nothing about which label follows.
            if piece and label.startswith(piece) and first not in found:
                found.append(first)
        if not found:
            raise ConfigError(f"label {label!r} has no usable first token in this tokenizer")
        for tok in found:
            if tok in owner and owner[tok] != label:
                raise ConfigError(
                    f"labels {owner[tok]!r} and {label!r} share a first token; one forward "
                    "step cannot separate them (use single-digit levels)"
                )
            owner[tok] = label
        ids[label] = found
    return ids


def match_label(token: str, labels: Sequence[str]) -> str | None:
    """The label a token's text starts, for APIs that return token strings (or None)."""
    piece = token.strip().casefold()
    if not piece:
        return None
    exact = [lab for lab in labels if lab.casefold() == piece]
    if exact:
        return exact[0]
    prefixed = [lab for lab in labels if lab.casefold().startswith(piece)]
    return prefixed[0] if len(prefixed) == 1 else None
