"""Judge prompts: Jinja templates from prompts/, with the judged text fenced as untrusted data.

The templates ship inside the package (``judgeserve/judge/prompts``; the repository's
top-level ``prompts/`` links there) so a server finds them without a checkout. A user
overrides one by putting a file of the same name in a directory passed as ``prompt_dirs``.

Prompt injection: each request draws a fresh random fence. The judged text was written
before the fence existed, so it cannot contain the closing line; if by construction it
does (a test forcing the random source), another fence is drawn. The instructions tell
the judge that fenced text is data. Only the verdict the judge returns is read.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

from .rubric import Rubric

__all__ = [
    "PROMPT_DIR",
    "JudgePrompt",
    "PromptBuilder",
    "new_fence",
]

PROMPT_DIR = Path(__file__).parent / "prompts"
SYSTEM_TEMPLATE = "system.jinja"
DEFAULT_TEMPLATES = {"single": "single.jinja", "pairwise": "pairwise.jinja"}
# What the judge's reply starts with; the next token is the verdict we read.
ANSWER_PREFIX = {"single": "Score:", "pairwise": "Verdict:"}
MAX_FENCE_DRAWS = 100


def new_fence() -> str:
    """A fresh 64-bit random nonce for one request's fence lines."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class JudgePrompt:
    """One rendered judge request; plain data so it can cross to a Ray Serve replica."""

    system: str
    user: str
    answer_prefix: str
    labels: tuple[str, ...]
    fence: str
    prompt_hash: str

    def messages(self) -> list[dict[str, str]]:
        """Chat messages for chat models (the answer prefix is appended by the backend)."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def text(self, chat_template: Callable[[list[dict[str, str]]], str] | None = None) -> str:
        """The full prompt as text, through a chat template when the model has one."""
        if chat_template is not None:
            return chat_template(self.messages()) + self.answer_prefix
        return f"{self.system}\n\n{self.user}\n\n{self.answer_prefix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgePrompt:
        return cls(**{**data, "labels": tuple(data["labels"])})


class PromptBuilder:
    """Renders rubric prompts; one per process (the Jinja environment caches templates)."""

    def __init__(
        self,
        prompt_dirs: Sequence[str | Path] = (),
        fence_source: Callable[[], str] = new_fence,
    ) -> None:
        loaders = [FileSystemLoader([str(d) for d in prompt_dirs])] if prompt_dirs else []
        loaders.append(FileSystemLoader(str(PROMPT_DIR)))
        # Plain text out, never HTML-escaped; StrictUndefined turns template typos into errors.
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=False,
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )
        self._fence_source = fence_source
        self._hashes: dict[tuple[str, str, str], str] = {}

    def _template_name(self, rubric: Rubric) -> str:
        return rubric.template or DEFAULT_TEMPLATES[rubric.mode]

    def prompt_hash(self, rubric: Rubric, criterion: str) -> str:
        """Hash of everything that shapes the prompt except the per-request text and fence."""
        key = (rubric.fingerprint(), criterion, self._template_name(rubric))
        if key not in self._hashes:
            h = hashlib.sha256()
            for name in (SYSTEM_TEMPLATE, self._template_name(rubric)):
                source, _, _ = self._env.loader.get_source(self._env, name)  # type: ignore[union-attr]
                h.update(source.encode())
            h.update("\0".join(key).encode())
            self._hashes[key] = h.hexdigest()[:16]
        return self._hashes[key]

    def _fence_for(self, texts: Sequence[str | None]) -> str:
        for _ in range(MAX_FENCE_DRAWS):
            fence = self._fence_source()
            if not any(fence in t for t in texts if t):
                return fence
        raise RuntimeError("could not draw a fence absent from the judged text")

    def render(
        self,
        rubric: Rubric,
        criterion: str,
        *,
        prompt: str,
        completion: str,
        reference: str | None = None,
        completion_b: str | None = None,
    ) -> JudgePrompt:
        """Render the judge request for one sample (or pair) and one criterion."""
        crit = next((c for c in rubric.criteria if c.name == criterion), None)
        if crit is None:
            raise KeyError(f"rubric {rubric.name!r} has no criterion {criterion!r}")
        if rubric.mode == "pairwise" and completion_b is None:
            raise ValueError("pairwise rubrics need completion_b (the baseline's answer)")
        if rubric.reference == "ignored":
            reference = None
        anchors = [
            {**a.model_dump(), "level": a.scores[criterion]}
            for a in rubric.anchors
            if criterion in a.scores
        ]
        judged = [prompt, completion, reference, completion_b]
        judged += [t for a in anchors for t in (a["prompt"], a["completion"], a["reference"])]
        fence = self._fence_for(judged)
        labels = rubric.labels_of(criterion)
        context = {
            "rubric": rubric,
            "criterion": crit,
            "levels": sorted(rubric.scale_of(criterion).levels.items())
            if rubric.mode == "single"
            else [],
            "labels": labels,
            "anchors": anchors,
            "prompt": prompt,
            "reference": reference,
            "completion": completion,
            "completion_a": completion,
            "completion_b": completion_b,
            "fence_open": f"<<<UNTRUSTED-{fence}",
            "fence_close": f"UNTRUSTED-{fence}>>>",
        }
        system = self._env.get_template(SYSTEM_TEMPLATE).render(context).strip()
        user = self._env.get_template(self._template_name(rubric)).render(context).strip()
        return JudgePrompt(
            system=system,
            user=user,
            answer_prefix=ANSWER_PREFIX[rubric.mode],
            labels=labels,
            fence=fence,
            prompt_hash=self.prompt_hash(rubric, criterion),
        )
