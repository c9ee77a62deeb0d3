"""Alerts: rules over a run's metrics, evaluated after every checkpoint, and notifiers.

* :mod:`.rules` — the YAML schema (``threshold``, ``regression``, ``trend``,
  ``divergence``) and loading with file/line/field errors; default rules ship in
  ``judgeserve/alerts/default_rules.yaml``.
* :mod:`.evaluate` — pure evaluation of the rules at one complete checkpoint.
* :mod:`.statistics` — the one-sided tests (Mann-Whitney U, bootstrap), and the two
  corrections: each checkpoint spends a share of a rule's alpha (the shares sum to it over
  the run), and the rules tested at one checkpoint are Holm-corrected together.
* :mod:`.engine` — the worker's checkpoint hook, run once per complete checkpoint:
  history from the store, de-duplication, recording, notifying.
* :mod:`.notifiers` — log and webhook (JSON or Slack-compatible) notifiers.
"""

from .engine import AlertEngine, history_from_store
from .evaluate import Finding, History, Point, evaluate, evaluate_checkpoint
from .notifiers import LogNotifier, Notifier, WebhookNotifier
from .rules import (
    DEFAULT_RULES,
    DivergenceRule,
    RegressionRule,
    RuleSet,
    ThresholdRule,
    TrendRule,
    default_rules,
    load_rules,
    parse_rules,
    rules_json_schema,
)

__all__ = [
    "AlertEngine",
    "history_from_store",
    "Finding",
    "History",
    "Point",
    "evaluate",
    "evaluate_checkpoint",
    "LogNotifier",
    "Notifier",
    "WebhookNotifier",
    "DEFAULT_RULES",
    "RuleSet",
    "ThresholdRule",
    "RegressionRule",
    "TrendRule",
    "DivergenceRule",
    "default_rules",
    "load_rules",
    "parse_rules",
    "rules_json_schema",
]
