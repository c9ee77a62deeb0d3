"""Which checkpoint to ship: paired comparisons, a ranking with confidence.

Pure: arrays and mappings in, statistics out; :mod:`judgeserve.read.compare` reads what
they need from the store, and the API, the web view, the CLI and the demo show it.

* :mod:`.quality` — the "quality" YAML (metrics with weights, directions and scales;
  gates that disqualify), its strict schema and loading; the default ships in
  ``judgeserve/ranking/default_quality.yaml``.
* :mod:`.paired` — two checkpoints probe by probe: mean difference with a bootstrap CI,
  Wilcoxon signed-rank p, Holm over metrics; pairwise rubrics' win rates.
* :mod:`.rank` — every checkpoint of a run scored with a CI, gated, the best chosen, and
  the checkpoints that cannot be told apart from it.
"""

from .paired import MetricDelta, WinRate, compare_sides, probe_differences, wilcoxon_p, win_rate
from .quality import (
    DEFAULT_QUALITY,
    Gate,
    Quality,
    QualityMetric,
    default_quality,
    load_quality,
    parse_quality,
    quality_json_schema,
)
from .rank import Ranked, Ranking, RankInput, rank

__all__ = [
    "MetricDelta",
    "WinRate",
    "compare_sides",
    "probe_differences",
    "wilcoxon_p",
    "win_rate",
    "DEFAULT_QUALITY",
    "Gate",
    "Quality",
    "QualityMetric",
    "default_quality",
    "load_quality",
    "parse_quality",
    "quality_json_schema",
    "RankInput",
    "Ranked",
    "Ranking",
    "rank",
]
