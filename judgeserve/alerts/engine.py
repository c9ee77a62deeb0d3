"""The alert engine: the worker's checkpoint hook that turns findings into alerts.

Once a checkpoint is complete (all its expected samples stored, or idle) the worker
recomputes its aggregates a last time and calls the engine with ``(store, run, step)``,
once. The engine reads the run's history, asks every active rule about that checkpoint
(their tests Holm-corrected together, see :mod:`.evaluate`), records an alert for each
finding, then hands it to the notifiers.

De-duplication: a rule never has two open alerts on a run. While one is open the rule
is not evaluated for that run; once it is resolved, the rule may fire again, but only
at a checkpoint later than the resolved alert's. With several workers evaluating the
same run at the same instant, a duplicate is possible (at least once, as everywhere in
judgeserve); a resolve of either clears it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..schema import Alert
from .evaluate import AnyRule, Finding, History, Outcome, Point, consider, decide
from .notifiers import LogNotifier, Notifier, WebhookNotifier
from .rules import RuleSet, load_rules

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store import Store

__all__ = ["AlertEngine", "history_from_store"]

log = logging.getLogger(__name__)


def history_from_store(store: Store, run: str) -> History:
    """A run's history: aggregates, ``train.*`` metrics, and at each checkpoint the
    ``flag.*`` series (0/1) and ``nonfinite.train.*`` (1 when that trainer metric was NaN
    or infinite at a step since the previous checkpoint)."""
    from .. import read  # SQLAlchemy only when a history is read: rules lint without it

    raw = read.metric_series(store, run)
    series: dict[str, list[Point]] = {
        metric: [Point(p["step"], p["mean"], p["ci_low"], p["ci_high"], p["n"]) for p in points]
        for metric, points in raw.items()
    }
    sizes: dict[int, int] = {}  # checkpoint step -> its samples
    for metric, points in series.items():
        if not metric.startswith("train."):
            for p in points:
                sizes[p.step] = max(sizes.get(p.step, 0), p.n)
    raised = store.run_flags(run)
    # A flag is a checkpoint-level verdict: 1 where raised, 0 at the other checkpoints.
    for name, steps in raised.items():
        on = set(steps)
        series[f"flag.{name}"] = [
            Point(s, 1.0 if s in on else 0.0, n=n) for s, n in sorted(sizes.items())
        ]
    for metric, raw_points in raw.items():
        bad = [(int(p["step"]), str(p["nonfinite"])) for p in raw_points if p.get("nonfinite")]
        if bad and metric.startswith("train."):
            series[f"nonfinite.{metric}"] = _nonfinite_series(metric, bad, sizes)
    return History(run, series, lambda step, metric: store.step_score_ids(run, step, metric))


_SAID = {"nan": "NaN", "inf": "+inf", "-inf": "-inf"}


def _nonfinite_series(
    metric: str, bad: list[tuple[int, str]], sizes: dict[int, int]
) -> list[Point]:
    """1 at each checkpoint whose steps since the previous checkpoint had ``metric`` NaN
    or infinite, with a note naming the first such step; else 0."""
    out, prev = [], -1
    for step in sorted(sizes):
        hits = [(s, kind) for s, kind in bad if prev < s <= step]
        note = ""
        if hits:
            first, kind = hits[0]
            more = f" (and at {len(hits) - 1} later steps)" if len(hits) > 1 else ""
            note = f"{metric} is {_SAID.get(kind, kind)} at step {first}{more}"
        out.append(Point(step, 1.0 if hits else 0.0, n=sizes[step], note=note))
        prev = step
    return out


class AlertEngine:
    """Evaluates rules after each checkpoint; records, de-duplicates and notifies alerts."""

    def __init__(self, rules: RuleSet, notifiers: Sequence[Notifier] = ()) -> None:
        self.rules = rules
        self.notifiers = list(notifiers)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertEngine:
        rules = load_rules(settings.alert_rules)
        notifiers: list[Notifier] = [LogNotifier()]
        if settings.alert_webhook_url:
            notifiers.append(
                WebhookNotifier(
                    settings.alert_webhook_url,
                    format=settings.alert_webhook_format,
                    web_url=settings.api_url,
                )
            )
        return cls(rules, notifiers)

    def __call__(self, store: Store, run: str, step: int) -> None:
        """The worker's checkpoint hook."""
        self.check(store, run, step)

    def check(self, store: Store, run: str, step: int) -> list[Alert]:
        """Evaluate every active rule at ``run``'s checkpoint ``step``; return new alerts."""
        rules = [r for r in self.rules.active if step >= r.from_step]
        if not rules:
            return []
        latest = store.latest_alerts(run)
        rules = [
            r
            for r in rules
            if (prev := latest.get(r.name)) is None
            or (prev.state == "resolved" and step > prev.step)
        ]
        if not rules:
            return []
        history = history_from_store(store, run)
        fired: list[Alert] = []
        for finding in self.findings(rules, history, step):
            alert = self._record(store, run, finding)
            if alert is not None:
                fired.append(alert)
        return fired

    @staticmethod
    def findings(rules: Sequence[AnyRule], history: History, step: int) -> list[Finding]:
        """What ``rules`` find at the complete checkpoint ``step`` of ``history``, its tests
        Holm-corrected together; a rule that raises is logged and left out."""
        outcomes: list[Outcome] = []
        for rule in rules:
            try:
                outcome = consider(rule, history, step)
            except Exception:
                log.exception("rule %s failed on %s@%d", rule.name, history.run, step)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return decide(outcomes)

    def _record(self, store: Store, run: str, finding: Finding) -> Alert | None:
        rule = finding.rule
        alert = Alert(
            run=run,
            step=finding.step,
            rule=rule.name,
            severity=rule.severity,
            message=finding.message,
            evidence={"type": rule.type, **finding.evidence},
            action=rule.action,
        )
        alert_id = store.add_alert(alert)
        if alert_id is None:
            return None  # another worker recorded this rule's open alert first
        alert = alert.model_copy(update={"id": alert_id})
        for notifier in self.notifiers:
            try:
                notifier.notify(alert)
            except Exception:
                log.exception("notifier %s failed on alert %s", type(notifier).__name__, alert.id)
        return alert

    def close(self) -> None:
        for notifier in self.notifiers:
            notifier.close()
