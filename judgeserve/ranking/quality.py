"""A run's "quality": the YAML that says which checkpoint is best, its strict schema, loading.

A quality file has ``metrics`` (each a per-sample metric or a ``*`` pattern, which
direction is better, a weight, and the scale that maps it onto 0-1) and ``gates`` (bounds
on a checkpoint's mean that disqualify it, whatever its score). Unknown keys are errors;
an error names the file, the line and the field, as for alert rules.

A checkpoint's score is the weighted mean of its metrics, each mapped onto 0-1 by its
``scale`` (1 is the better end) and averaged over probes (every probe counts once,
whatever its number of draws). A pattern's weight is shared by the metrics it matches,
so ``judge.*`` with weight 2 weighs 2 whether the run has one criterion or six.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..exceptions import ConfigError
from ..yamlfile import validate_yaml

__all__ = [
    "Quality",
    "QualityMetric",
    "Gate",
    "DEFAULT_QUALITY",
    "parse_quality",
    "load_quality",
    "default_quality",
    "quality_json_schema",
]

DEFAULT_QUALITY = Path(__file__).resolve().parent / "default_quality.yaml"

MetricPattern = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_*][A-Za-z0-9_.:/*-]{0,255}$")
]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,255}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityMetric(_Strict):
    """One term of the score."""

    metric: MetricPattern = Field(
        description="A per-sample metric ('reference.semscore') or a pattern with '*' "
        "('judge.*'); set-level metrics (diversity.*) have no per-probe values: gate on them."
    )
    better: Literal["higher", "lower"] = Field(description="Which direction is better.")
    weight: float = Field(
        1.0, gt=0, le=1000, description="Share of the score; a pattern's weight is split "
        "evenly between the metrics it matches."
    )
    scale: tuple[float, float] = Field(
        (0.0, 1.0),
        description="[low, high]: the metric's range, mapped onto 0-1 (the better end is 1), "
        "so that metrics of different units can be added; e.g. [0, 100] for chrF.",
    )
    description: str = Field("", description="Why this metric counts, for people.")

    @model_validator(mode="after")
    def _scale_ordered(self) -> QualityMetric:
        low, high = self.scale
        if not low < high:
            raise ValueError(f"scale must be [low, high] with low < high, not {list(self.scale)}")
        return self

    def matches(self, metric: str) -> bool:
        return fnmatch.fnmatchcase(metric, self.metric)

    def unit(self, value: float) -> float:
        """``value`` on 0-1, 1 the better end (outside the scale, beyond it: not clipped)."""
        low, high = self.scale
        x = (value - low) / (high - low)
        return x if self.better == "higher" else 1.0 - x


class Gate(_Strict):
    """A bound a checkpoint must keep to be chosen at all."""

    metric: MetricName = Field(
        description="Any metric of the checkpoint's aggregates: per-sample ('repetition.loop', "
        "the share of looping samples) or set-level ('diversity.unique_ratio'); or a "
        "checkpoint flag as 'flag.<name>' (1 where raised, else 0)."
    )
    at_most: float | None = Field(None, description="Disqualified when the mean is above this.")
    at_least: float | None = Field(None, description="Disqualified when the mean is below this.")
    description: str = Field("", description="What the gate protects against, for people.")

    @model_validator(mode="after")
    def _bounded(self) -> Gate:
        if self.at_most is None and self.at_least is None:
            raise ValueError("a gate needs 'at_most', 'at_least' or both")
        return self

    def failed_by(self, mean: float) -> bool:
        return (self.at_most is not None and mean > self.at_most) or (
            self.at_least is not None and mean < self.at_least
        )

    def text(self) -> str:
        """``memorization.memorized <= 0.05`` (how a gate is named to people)."""
        parts = []
        if self.at_least is not None:
            parts.append(f">= {self.at_least:g}")
        if self.at_most is not None:
            parts.append(f"<= {self.at_most:g}")
        return f"{self.metric} {' and '.join(parts)}"


class Quality(_Strict):
    """A quality file."""

    metrics: list[QualityMetric] = Field(
        min_length=1, description="The score's terms; a metric matched by two takes the first."
    )
    gates: list[Gate] = Field(
        default_factory=list, description="Bounds that disqualify a checkpoint (on its mean)."
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Level of the score's CI and of the test that tells a checkpoint apart "
        "from the best (Holm-corrected over the checkpoints compared with it).",
    )

    @model_validator(mode="after")
    def _unique(self) -> Quality:
        names = [m.metric for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metrics must be listed once; repeated: {dupes}")
        return self

    def weights(self, available: list[str] | set[str]) -> dict[str, tuple[float, QualityMetric]]:
        """``{metric: (weight, term)}`` for the metrics of ``available`` the score uses, the
        weights summing to 1 (empty when none matches)."""
        taken: dict[str, QualityMetric] = {}
        for metric in sorted(available):
            for term in self.metrics:
                if term.matches(metric):
                    taken[metric] = term
                    break
        share: dict[str, int] = {}
        for term in taken.values():
            share[term.metric] = share.get(term.metric, 0) + 1
        raw = {m: t.weight / share[t.metric] for m, t in taken.items()}
        total = sum(raw.values())
        return {m: (w / total, taken[m]) for m, w in raw.items()}

    def direction(self, metric: str) -> Literal["higher", "lower"] | None:
        """Which direction is better for ``metric`` by this definition (None: not in it)."""
        for term in self.metrics:
            if term.matches(metric):
                return term.better
        return None


def parse_quality(text: str, source: str = "<string>") -> Quality:
    """Validate quality YAML text; :class:`ConfigError` names source, line and field."""
    return validate_yaml(text, Quality, source, "quality file")


def load_quality(path: str | Path | None = None) -> Quality:
    """Read and validate a quality file; ``None`` gives the definition shipped in the
    package. Cached until the file changes (the API reads it on every ranking)."""
    path = Path(path) if path is not None else DEFAULT_QUALITY
    try:
        stat = path.stat()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the quality file: {e.strerror or e}") from e
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> Quality:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the quality file: {e.strerror or e}") from e
    return parse_quality(text, source=path)


def default_quality() -> Quality:
    """The definition every run gets with zero configuration."""
    return load_quality(None)


def quality_json_schema() -> dict[str, Any]:
    """JSON Schema of quality files, for editor completion."""
    schema = Quality.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "judgeserve quality definition"
    return schema
