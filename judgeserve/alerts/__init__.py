"""Alerts: rules over a run's metrics, evaluated after every checkpoint, and notifiers.

* :mod:`.rules` — the YAML schema (``threshold``, ``regression``, ``trend``,
  ``divergence``) and loading with file/line/field errors; default rules ship in
  ``judgeserve/alerts/default_rules.yaml``.
* :mod:`.evaluate` — pure evaluation of one rule at one checkpoint, with the statistics
  (one-sided Mann-Whitney U, bootstrap CI of a difference of means).
* :mod:`.engine` — the worker's checkpoint hook: history from the store, de-duplication,
  recording, notifying.
* :mod:`.notifiers` — log and webhook (JSON or Slack-compatible) notifiers.
"""

from .engine import AlertEngine, history_from_store
from .evaluate import Finding, History, Point, evaluate
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
