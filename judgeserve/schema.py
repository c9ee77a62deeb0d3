"""Pydantic models shared by the SDK, the API and the worker: the wire format."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "WireModel",
    "clean_text",
    "MAX_TEXT_BYTES",
    "MAX_SAMPLES_PER_REQUEST",
    "RunName",
    "RUBRIC_NAME_PATTERN",
    "RubricName",
    "rubric_name_problem",
    "Sample",
    "SampleIn",
    "SampleBatch",
    "Score",
    "RunMetric",
    "MetricsIn",
    "SummaryIn",
    "CheckpointIn",
    "CheckpointKind",
    "Alert",
    "Aggregate",
]

MAX_TEXT_BYTES = 64 * 1024
MAX_SAMPLES_PER_REQUEST = 1000
MAX_METRICS_PER_REQUEST = 1000

RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
RunName = Annotated[str, StringConstraints(pattern=RUN_NAME_PATTERN)]
SampleId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]

# A rubric is named by an identifier (its file is <rubric dir>/<name>.yaml), never by a
# path: a client must not make a worker read /dev/zero or any YAML file on its host.
RUBRIC_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_RUBRICS = 32


def rubric_name_problem(name: object) -> str | None:
    """Why ``name`` is not a rubric name (None when it is one)."""
    if isinstance(name, str) and re.fullmatch(RUBRIC_NAME_PATTERN, name):
        return None
    return (
        f"{str(name)[:80]!r} is not a rubric name: rubrics are named, not given by path (lower-case "
        "letters, digits and '_', starting with a letter, at most 64; the file is "
        "<rubric dir>/<name>.yaml)"
    )


def _rubric_name(value: str) -> str:
    problem = rubric_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


RubricName = Annotated[str, AfterValidator(_rubric_name)]


def clean_text(value: str) -> str:
    """``value`` if every store can keep it: valid Unicode (no lone UTF-16 surrogate, which
    JSON's ``\\ud800`` escapes can carry) and no NUL character (PostgreSQL refuses it)."""
    _utf8_size(value)
    return value


def _utf8_size(value: str) -> int:
    """:func:`clean_text`'s checks, returning the UTF-8 size: one pass (ASCII: none)."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text must be valid Unicode; a lone surrogate {value[e.start]!r} is at "
            f"character {e.start}"
        ) from None


def _clean_all(value: Any) -> None:
    # Strings at any depth (dict keys too): what a request carries ends up in the store.
    if isinstance(value, str):
        clean_text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _clean_all(k)
            _clean_all(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _clean_all(v)


class WireModel(BaseModel):
    """Base of every model a request carries: each string field, at any depth, must be
    valid Unicode without NUL (:func:`clean_text`), or the request is a 422 naming the
    field. One bad string must never reach a worker: it would make the store raise."""

    @field_validator("*", mode="after")
    @classmethod
    def _clean(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name not in _text_fields(cls):  # those were checked as they were read
            _clean_all(value)
        return value


def _within_text_limit(value: str) -> str:
    # Character counts undercount multi-byte text; the limit protects storage, so count bytes.
    size = _utf8_size(value)
    if size > MAX_TEXT_BYTES:
        raise ValueError(f"text is {size} bytes; the limit is {MAX_TEXT_BYTES} bytes (64 KiB)")
    return value


@functools.cache
def _text_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields of ``model`` typed :data:`Text` (or ``Text | None``): already checked."""

    def checked(annotation: Any) -> bool:
        meta = getattr(annotation, "__metadata__", ())
        if any(getattr(m, "func", None) is _within_text_limit for m in meta):
            return True
        return any(checked(a) for a in get_args(annotation))

    return frozenset(
        name
        for name, f in model.model_fields.items()
        if any(getattr(m, "func", None) is _within_text_limit for m in f.metadata)
        or checked(f.annotation)
    )


Text = Annotated[str, AfterValidator(_within_text_limit)]
ShortText = Annotated[str, StringConstraints(max_length=256)]


def now() -> datetime:
    return datetime.now(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Request(_Strict, WireModel):
    pass


class SampleIn(_Request):
    """One generation as the trainer sends it; run and step come from the request."""

    id: SampleId = Field(
        description="The idempotency key within the run: made by the client (the SDK makes "
        "one on submit when the caller gives none); a re-sent sample with the same id adds "
        "nothing."
    )
    prompt: Text = Field(
        "",
        description="The prompt the model completed (≤ 64 KiB); optional: the detectors "
        "read the completion alone (the judge and reference scorers show it when given).",
    )
    completion: Text = Field(description="What the model generated (≤ 64 KiB).")
    reference: Text | None = Field(None, description="A reference answer, if the probe has one.")
    probe_id: ShortText | None = Field(None, description="Stable id of the probe across checkpoints.")
    tags: dict[ShortText, ShortText] = Field(default_factory=dict, description="Free-form labels.")


class SampleBatch(_Request):
    """Body of ``POST /v1/runs/{run}/samples``."""

    step: int = Field(ge=0, le=2**53, description="Training step the samples were generated at.")
    checkpoint: ShortText | None = Field(None, description="Checkpoint name or path, if saved.")
    rubrics: list[RubricName] | None = Field(
        None,
        max_length=MAX_RUBRICS,
        description="Rubrics to judge this run with, by name (files in the server's rubric "
        "directory, or built in); an unknown or invalid one is refused (422).",
    )
    expected: int | None = Field(
        None,
        ge=1,
        le=10**7,
        description="How many samples this step will have in all (probe set x draws), when "
        "known: its alert rules then run as soon as they are scored, instead of after the "
        "checkpoint has been idle for checkpoint_idle_s.",
    )
    samples: list[SampleIn] = Field(
        min_length=1,
        max_length=MAX_SAMPLES_PER_REQUEST,
        description=f"At most {MAX_SAMPLES_PER_REQUEST} samples per request.",
    )


CheckpointKind = Literal["lora", "full"]
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _checkpoint_path(value: str) -> str:
    # The API does not look for the folder (the generator may see another filesystem),
    # but a relative path means nothing on another machine.
    if "\x00" in value:
        raise ValueError("the path must not contain NUL characters")
    if not (_URL.match(value) or value.startswith("/")):
        raise ValueError(
            "give an absolute path (as the generator sees it) or a URL such as s3://bucket/run/ckpt"
        )
    return value


CheckpointPath = Annotated[
    str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_checkpoint_path)
]


class CheckpointIn(_Request):
    """Body of ``POST /v1/runs/{run}/checkpoints``: "the trainer saved a checkpoint here"."""

    step: int = Field(ge=0, le=2**53, description="Training step the checkpoint was saved at.")
    path: CheckpointPath = Field(
        description="The folder the trainer wrote (for a PEFT model, the adapter folder): an "
        "absolute path on a filesystem the generator shares, or an fsspec URL (s3://, gs:// "
        "...; the server needs the fsspec extra)."
    )
    kind: CheckpointKind = Field(
        "lora", description="'lora': a PEFT adapter folder; 'full': a whole model folder."
    )
    base_model: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        None,
        description="The base model a LoRA adapter was trained on; the generator refuses "
        "an adapter for another base than it hosts (None: whatever it hosts).",
    )
    probe_set: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")] | None = Field(
        None,
        description="Version of the run's probe set to generate (as PUT /probes answered); "
        "None: the run's current probe set.",
    )


class Sample(SampleIn):
    """A sample as queued and stored: the generation plus where it belongs."""

    run: RunName
    step: int = Field(ge=0)
    checkpoint: ShortText | None = None
    created: datetime = Field(default_factory=now)

    @property
    def id_key(self) -> tuple[str, str]:
        """Sample ids are unique within a run, not across runs."""
        return (self.run, self.id)


class Score(_Strict):
    """One scorer's verdict on one sample, e.g. ``repetition.loop``."""

    scorer: str = Field(description="'<family>.<name>', e.g. 'length.tokens'.")
    value: float | bool | None = Field(description="The number, flag, or None when unparseable.")
    details: dict[str, Any] = Field(default_factory=dict)
    version: str = Field("1", description="Version of the scorer that made it.")


class MetricsIn(_Request):
    """Body of ``POST /v1/runs/{run}/metrics``: trainer-side numbers such as loss."""

    step: int = Field(ge=0, le=2**53, description="Training step the values belong to.")
    values: dict[ShortText, float | None] = Field(
        min_length=1,
        max_length=MAX_METRICS_PER_REQUEST,
        description="Metric name to value. NaN and ±infinity are accepted and kept as such "
        "(a diverged loss is news): as JSON's NaN/Infinity, as the strings 'nan', 'inf', "
        "'-inf', or as null (what JSON encoders make of NaN).",
    )


class SummaryIn(_Request):
    """Body of ``POST /v1/runs/{run}/summary``: values of the whole run, not of a step
    (a trainer's end-of-run ``train_runtime``, ``total_flos``, ``train_loss`` ...)."""

    values: dict[ShortText, float | None] = Field(
        min_length=1,
        max_length=MAX_METRICS_PER_REQUEST,
        description="Name to value; a name sent again replaces its value. NaN and "
        "±infinity are kept as such, as for metrics.",
    )


class RunMetric(_Strict):
    run: RunName
    step: int
    name: str
    value: float


class Aggregate(_Strict):
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


class Alert(_Strict):
    id: int | None = None
    run: RunName
    step: int
    rule: str
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    state: Literal["open", "resolved"] = "open"
    action: Literal["notify", "stop"] = "notify"
    created: datetime = Field(default_factory=now)
    resolved_at: datetime | None = None
