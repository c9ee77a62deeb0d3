"""Alert rules: the YAML a user writes, its strict schema, and loading with line numbers.

A rules file is a mapping with one key, ``rules:``, a list of rules. Each rule has a
``type`` (``threshold``, ``regression``, ``trend`` or ``divergence``), a unique ``name``,
a ``severity``, and an ``action`` (``notify``, or ``stop`` to ask the trainer's callback to
stop the run). Unknown keys are errors, so a typo is never silently ignored; an error
names the file, the line and the field.

Metric names are those of ``GET /v1/runs/{run}/metrics``: per-checkpoint aggregates such
as ``repetition.loop`` (the share of looping samples), set-level metrics such as
``diversity.distinct2``, trainer metrics as ``train.<name>`` (``train.loss``), and
checkpoint flags as ``flag.<name>`` (1 when raised at that checkpoint, else 0), and
``nonfinite.train.<name>`` (1 when that trainer metric was NaN or infinite since the
previous checkpoint, else 0).

A rule's baseline is chosen before looking at the data (``first``, ``previous`` or a
step): "the best checkpoint so far" is the one noise flattered most, and comparing with
it finds regressions in a model that never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..exceptions import ConfigError
from ..yamlfile import validate_yaml

__all__ = [
    "Rule",
    "ThresholdRule",
    "RegressionRule",
    "TrendRule",
    "DivergenceRule",
    "RuleSet",
    "DEFAULT_RULES",
    "load_rules",
    "parse_rules",
    "default_rules",
    "rules_json_schema",
]

DEFAULT_RULES = Path(__file__).resolve().parent / "default_rules.yaml"

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,255}$")]
Worse = Literal["higher", "lower"]
Baseline = Literal["first", "previous"] | Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Strict):
    name: Identifier = Field(description="Unique identifier; an alert names the rule that fired.")
    description: str = Field("", description="What the rule protects against, for people.")
    metric: MetricName = Field(
        description="Metric watched: an aggregate ('repetition.loop'), a set-level metric "
        "('diversity.distinct2'), 'train.<name>' or 'flag.<name>'."
    )
    severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="Carried by the alert; webhooks and the web view show it."
    )
    action: Literal["notify", "stop"] = Field(
        "notify",
        description="'notify': record and send the alert; 'stop': also ask the trainer's "
        "callback to stop training.",
    )
    min_samples: int = Field(
        4, ge=1, description="Checkpoints whose metric has fewer samples than this are ignored."
    )
    from_step: int = Field(
        0, ge=0, description="Checkpoints before this step are ignored (e.g. warm-up)."
    )
    enabled: bool = Field(True, description="False keeps the rule in the file but off.")


class ThresholdRule(_RuleBase):
    """Fires when a checkpoint's metric crosses a fixed bound."""

    type: Literal["threshold"] = Field(description="'threshold'.")
    above: float | None = Field(None, description="Fire when the statistic is above this.")
    below: float | None = Field(None, description="Fire when the statistic is below this.")
    statistic: Literal["mean", "ci_low", "ci_high"] = Field(
        "mean",
        description="Which number of the aggregate is compared: 'ci_low' with 'above' fires "
        "only when the whole confidence interval is over the bound.",
    )

    @model_validator(mode="after")
    def _bounded(self) -> ThresholdRule:
        if self.above is None and self.below is None:
            raise ValueError("a threshold rule needs 'above', 'below' or both")
        return self


CONFIDENCE_DESCRIPTION = (
    "Chance that the rule raises no false alarm over the whole run: every checkpoint's "
    "test spends a share of 1 - confidence (the shares sum to it however long the run), "
    "and the rules tested at one checkpoint are Holm-corrected together."
)
TEST_DESCRIPTION = (
    "'mann_whitney': one-sided Mann-Whitney U on per-sample values; 'bootstrap': "
    "bootstrap of the difference of means (p from its standard error); 'none': compare "
    "means only. Set-level metrics have no per-sample values: means only."
)


class _Tested(_Strict):
    worse: Worse = Field(description="Which direction is bad for this metric: higher or lower.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description=CONFIDENCE_DESCRIPTION)
    test: Literal["mann_whitney", "bootstrap", "none"] = Field(
        "mann_whitney", description=TEST_DESCRIPTION
    )


class _Comparison(_Tested):
    min_change: float = Field(
        0.0, ge=0, description="Smallest worsening of the mean (absolute) that counts."
    )
    min_relative_change: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Smallest worsening of the mean as a fraction of the baseline's "
        "(0.5: half); for metrics whose scale differs between runs, such as lengths.",
    )

    @field_validator("baseline", mode="before", check_fields=False)
    @classmethod
    def _chosen_before_looking(cls, value: Any) -> Any:
        if value == "best":
            raise ValueError(
                "'best' is no longer a baseline: the best checkpoint so far is the one noise "
                "flattered most, so comparing with it raises alarms on a model that never "
                "changed; use 'first', 'previous' or a step number"
            )
        return value


class RegressionRule(_RuleBase, _Comparison):
    """Fires when a checkpoint is significantly worse than a baseline checkpoint."""

    type: Literal["regression"] = Field(description="'regression'.")
    baseline: Baseline = Field(
        "first", description="Checkpoint compared with: 'first', 'previous', or a step number."
    )


class TrendRule(_RuleBase, _Tested):
    """Fires when the metric got worse at each of the last ``checkpoints`` checkpoints, and
    significantly so between the first and the last of them."""

    type: Literal["trend"] = Field(description="'trend'.")
    checkpoints: int = Field(
        3, ge=2, le=100, description="How many consecutive worsenings make a trend."
    )
    min_change: float = Field(
        0.0, ge=0, description="Each worsening must be larger than this (absolute)."
    )


class DivergenceRule(_RuleBase, _Comparison):
    """Fires when the training loss improved while the metric got worse."""

    type: Literal["divergence"] = Field(description="'divergence'.")
    loss: MetricName = Field(
        "train.loss", description="The trainer metric that should fall: 'train.<name>'."
    )
    baseline: Baseline = Field(
        "first",
        description="Checkpoint compared with: 'first' (default), 'previous', or a step number.",
    )
    min_loss_drop: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="The loss must have fallen by at least this fraction since the baseline.",
    )


Rule = Annotated[
    ThresholdRule | RegressionRule | TrendRule | DivergenceRule, Field(discriminator="type")
]


class RuleSet(_Strict):
    """A rules file."""

    rules: list[Rule] = Field(default_factory=list, description="The rules, evaluated in order.")

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {dupes}")
        return self

    @property
    def active(self) -> list[ThresholdRule | RegressionRule | TrendRule | DivergenceRule]:
        return [r for r in self.rules if r.enabled]


# --- loading ----------------------------------------------------------------------------


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """Validate rules YAML text; raise :class:`ConfigError` naming source, line and field."""
    return validate_yaml(text, RuleSet, source, "rules file",
                         empty=RuleSet())


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate a rules file; ``None`` gives the rules shipped in the package."""
    path = Path(path) if path is not None else DEFAULT_RULES
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read alert rules: {e.strerror or e}") from e
    return parse_rules(text, source=str(path))


def default_rules() -> RuleSet:
    """The rules every run gets with zero configuration."""
    return load_rules(None)


def rules_json_schema() -> dict[str, Any]:
    """JSON Schema of rules files, for editor completion."""
    schema = RuleSet.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "judgeserve alert rules"
    return schema
