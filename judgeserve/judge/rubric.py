"""Rubrics: the YAML a user writes to tell the judge what to score, and its strict schema.

Every model forbids unknown keys, so a typo (``levles:``) is an error rather than a
silently ignored setting. Errors name the file, the line and the field (see
:mod:`judgeserve.yamlfile`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..exceptions import ConfigError
from ..schema import RUBRIC_NAME_PATTERN, rubric_name_problem
from ..yamlfile import validate_yaml

__all__ = [
    "Anchor",
    "Criterion",
    "JudgeSpec",
    "Rubric",
    "Scale",
    "PAIRWISE_LABELS",
    "BUILTIN_RUBRIC_DIR",
    "load_rubric",
    "parse_rubric",
    "find_rubric",
    "rubric_by_name",
    "RubricCatalog",
    "rubrics_in_tag",
    "rubric_json_schema",
]

# Shipped inside the package so a server finds them without the repository checkout;
# the top-level rubrics/ directory is a link to this one.
BUILTIN_RUBRIC_DIR = Path(__file__).parent / "rubrics"

# Pairwise verdicts: the judge answers with one of these; each starts with a distinct
# first token in every tokenizer we know, which one-step scoring needs.
PAIRWISE_LABELS: tuple[str, ...] = ("A", "B", "tie")

Identifier = Annotated[str, StringConstraints(pattern=RUBRIC_NAME_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
# YAML reads `version: 1` as an int; a version is a label, so accept numbers as text.
Version = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scale(_Strict):
    """Score levels and what each means, e.g. ``{1: "useless", ..., 5: "excellent"}``."""

    levels: dict[int, NonEmpty] = Field(
        min_length=2,
        description="Level → meaning. Levels are the digits 0-9 so each is one token "
        "and the judge's whole verdict is read from a single forward step.",
    )

    @field_validator("levels")
    @classmethod
    def _digits(cls, levels: dict[int, str]) -> dict[int, str]:
        bad = [k for k in levels if not 0 <= k <= 9]
        if bad:
            raise ValueError(f"levels must be the digits 0-9 (one token each); got {bad}")
        return levels

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(str(k) for k in sorted(self.levels))


class Criterion(_Strict):
    """One thing the judge scores; it becomes the score ``judge.<rubric>.<name>``."""

    name: Identifier = Field(description="Lower-case identifier used in the score name.")
    description: NonEmpty = Field(description="What the judge should assess, in plain words.")
    scale: Scale | None = Field(
        None, description="Overrides the rubric's scale for this criterion."
    )


class Anchor(_Strict):
    """A worked example shown to the judge (few-shot): a text and the levels it deserves."""

    prompt: str = Field(description="The prompt of the example.")
    completion: str = Field(description="The example answer being judged.")
    reference: str | None = Field(None, description="Reference answer of the example, if any.")
    scores: dict[str, int] = Field(description="Criterion name → level this example deserves.")
    rationale: str | None = Field(None, description="Why; shown to the judge after the score.")


class JudgeSpec(_Strict):
    """Which judge scores this rubric."""

    backend: str = Field(
        "serve",
        description="A registered judge backend: 'serve' (the Ray Serve deployment), "
        "'transformers', 'vllm', 'openai', or a plug-in's name.",
    )
    model: str | None = Field(
        None, description="Model path or name (the backend's default if unset)."
    )
    url: str | None = Field(None, description="Endpoint for 'serve' / 'openai' backends.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend keyword options.")


class Rubric(_Strict):
    """A rubric file: criteria, scale, mode and which judge to use."""

    name: Identifier = Field(description="Identifier; scores are named judge.<name>.<criterion>.")
    version: Version = Field(description="Bump when wording changes: scores record it.")
    description: NonEmpty = Field(description="The task the judged model was given, for the judge.")
    mode: Literal["single", "pairwise"] = Field(
        "single",
        description="'single': score each answer on the scale; 'pairwise': compare it with "
        "the baseline's answer to the same probe (both orders).",
    )
    baseline: str = Field(
        "previous",
        description="Pairwise only: 'previous' checkpoint, or the name of a baseline checkpoint.",
    )
    reference: Literal["required", "optional", "ignored"] = Field(
        "optional",
        description="'required': samples without a reference are not judged; 'optional': shown "
        "when present; 'ignored': never shown.",
    )
    scale: Scale | None = Field(None, description="Default scale of every criterion.")
    criteria: list[Criterion] = Field(min_length=1, description="What to score, one score each.")
    anchors: list[Anchor] = Field(default_factory=list, description="Few-shot worked examples.")
    judge: JudgeSpec = Field(default_factory=JudgeSpec, description="Backend and model.")
    sample_rate: float = Field(
        1.0, gt=0, le=1, description="Fraction of samples judged (chosen by a hash of the id)."
    )
    min_label_mass: float = Field(
        0.5,
        ge=0,
        le=1,
        description="If the scale's tokens get less probability than this, the one-step "
        "score is not trusted and the judge generates a verdict that is parsed instead.",
    )
    template: str | None = Field(
        None, description="Jinja template in prompts/ (default: single.jinja or pairwise.jinja)."
    )

    _source: str = PrivateAttr("<string>")

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        names = [c.name for c in self.criteria]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"criterion names must be unique; repeated: {dupes}")
        if self.mode == "single":
            missing = [c.name for c in self.criteria if c.scale is None and self.scale is None]
            if missing:
                raise ValueError(f"criteria {missing} have no scale and the rubric sets none")
        for i, anchor in enumerate(self.anchors):
            for crit, level in anchor.scores.items():
                if crit not in names:
                    raise ValueError(f"anchors[{i}] scores unknown criterion {crit!r}")
                if self.mode == "single" and level not in self.scale_of(crit).levels:
                    raise ValueError(f"anchors[{i}] gives {crit!r} level {level}, not on its scale")
        return self

    def scale_of(self, criterion: str) -> Scale:
        crit = next(c for c in self.criteria if c.name == criterion)
        scale = crit.scale or self.scale
        assert scale is not None  # guaranteed by _consistent for single mode
        return scale

    def labels_of(self, criterion: str) -> tuple[str, ...]:
        """The verdict labels the judge chooses from for one criterion."""
        return PAIRWISE_LABELS if self.mode == "pairwise" else self.scale_of(criterion).labels

    @property
    def source(self) -> str:
        """Where the rubric was loaded from (for messages)."""
        return self._source

    def fingerprint(self) -> str:
        """Hash of the rubric's content: changes whenever its meaning could."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


# --- loading ---------------------------------------------------------------------------


def parse_rubric(text: str, source: str = "<string>") -> Rubric:
    """Validate rubric YAML text; raise :class:`ConfigError` naming source, line and field."""
    rubric = validate_yaml(text, Rubric, source, "rubric")
    rubric._source = source
    return rubric


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read rubric: {e.strerror or e}") from e
    return parse_rubric(text, source=str(path))


def find_rubric(name_or_path: str, dirs: Sequence[str | Path] = ()) -> Rubric:
    """A rubric by file path, or by name from ``dirs`` then the built-in rubrics.

    For a person at the command line (``judgeserve calibrate FILE``). What a client sends
    (a run's rubrics, a sample's ``rubrics`` tag) goes through :func:`rubric_by_name`,
    which never reads a path.
    """
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") or as_path.exists():
        return load_rubric(as_path)
    return rubric_by_name(name_or_path, dirs)


def rubrics_in_tag(tag: str | None) -> list[str]:
    """The rubric names of a sample's ``rubrics`` tag (comma-separated)."""
    return [r.strip() for r in (tag or "").split(",") if r.strip()]


def _rubric_file(name: str, dirs: Sequence[str | Path]) -> Path:
    """The file of rubric ``name``: ``<dir>/<name>.yaml`` (or ``.yml``) in ``dirs``, then
    the built-in rubrics. ``name`` must be a rubric name, never a path."""
    problem = rubric_name_problem(name)
    if problem:
        raise ConfigError(problem)
    for directory in [*map(Path, dirs), BUILTIN_RUBRIC_DIR]:
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(d) for d in [*dirs, BUILTIN_RUBRIC_DIR])
    raise ConfigError(f"no rubric named {name!r} (searched {searched})")


def rubric_by_name(name: str, dirs: Sequence[str | Path] = ()) -> Rubric:
    """The rubric named ``name`` (an identifier, as ``Rubric.name``), looked up only in
    ``dirs`` then the built-in rubrics: a path (``/dev/zero``, ``../x``) is refused."""
    return load_rubric(_rubric_file(name, dirs))


class RubricCatalog:
    """Rubrics by name for a long-lived process (the API checks what clients name): each
    file is parsed again only when its size or modification time changed, so a request
    costs a few ``stat`` calls, and a fixed rubric is seen without a restart."""

    def __init__(self, dirs: Sequence[str | Path] = ()) -> None:
        self.dirs = [Path(d) for d in dirs]
        self._parsed: dict[Path, tuple[tuple[int, int], Rubric | ConfigError]] = {}

    def get(self, name: str) -> Rubric:
        """The rubric, or :class:`ConfigError` saying why not (bad name, not found, invalid)."""
        path = _rubric_file(name, self.dirs)
        try:
            st = path.stat()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read rubric: {e.strerror or e}") from e
        key = (st.st_mtime_ns, st.st_size)
        cached = self._parsed.get(path)
        if cached is None or cached[0] != key:
            try:
                result: Rubric | ConfigError = load_rubric(path)
            except ConfigError as e:
                result = e
            self._parsed[path] = cached = (key, result)
        if isinstance(cached[1], ConfigError):
            raise cached[1]
        return cached[1]

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be used as a rubric (None: it can)."""
        try:
            self.get(name)
        except ConfigError as e:
            return str(e)
        return None

    def active(
        self, run_rubrics: Sequence[str] | None, default: Sequence[str], judge_url: str | None
    ) -> dict[str, Any]:
        """Which rubrics judge a run and whether each can: ``{"named_by": "run" | "server
        default" | None, "rubrics": [{"name", "version", "mode", "criteria", "backend",
        "problem"}]}``. ``problem`` says why a rubric's samples get no judge scores (not
        found, invalid, no judge endpoint configured); None when it can judge."""
        names = list(run_rubrics or [])
        named_by = "run" if names else ("server default" if default else None)
        out = []
        for name in names or default:
            entry: dict[str, Any] = {"name": name, "version": None, "mode": None,
                                     "criteria": [], "backend": None, "problem": None}
            try:
                rubric = self.get(name)
            except ConfigError as e:
                entry["problem"] = str(e)
                out.append(entry)
                continue
            spec = rubric.judge
            entry.update(version=rubric.version, mode=rubric.mode, backend=spec.backend,
                         criteria=[c.name for c in rubric.criteria])
            if spec.backend == "serve" and not (spec.url or judge_url):
                entry["problem"] = ("no judge endpoint: set JUDGESERVE_JUDGE_URL (or the "
                                    "rubric's judge.url); its samples are not judged")
            elif spec.backend == "openai" and not spec.url:
                entry["problem"] = "the openai judge backend needs judge.url in the rubric"
            out.append(entry)
        return {"named_by": named_by, "rubrics": out}


def rubric_json_schema() -> dict[str, Any]:
    """JSON Schema of rubric files, for editor completion (``judgeserve rubric schema``)."""
    schema = Rubric.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "judgeserve rubric"
    return schema
