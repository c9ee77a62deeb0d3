"""The ranking and the comparison as lines of text, for ``judgeserve best|compare`` and the
demo's summary: from the same JSON the API answers (``read.best``, ``read.compare_checkpoints``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["best_lines", "best_headline", "compare_lines"]


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(low: Any, high: Any, digits: int = 3) -> str:
    return "" if low is None or high is None else f"{low:.{digits}f}..{high:.{digits}f}"


def best_headline(result: Mapping[str, Any]) -> str:
    """One line: the best checkpoint beside the lowest-loss one, or why there is none."""
    lowest = result.get("lowest_loss")
    loss = (f"; lowest training loss at step {lowest['step']} ({lowest['loss']:.3f})"
            if lowest else "")
    best = result.get("best")
    if best is None:
        return f"best: none — {result.get('reason') or 'no checkpoint'}{loss}"
    band = result.get("indistinguishable") or []
    told = (f"; cannot be told apart from step{'s' if len(band) > 1 else ''} "
            f"{', '.join(map(str, band))}" if band else "")
    conf = round(100 * result.get("confidence", 0.95))
    return (f"best: step {best['step']}, score {_num(best['score'])} "
            f"({conf}% CI {_ci(best['ci_low'], best['ci_high'])}){told}{loss}")


def best_lines(result: Mapping[str, Any]) -> list[str]:
    """The headline, the score's terms, and one line per checkpoint with its gates."""
    lines = [f"run {result.get('run')}: {best_headline(result)}"]
    weights = result.get("weights") or {}
    if weights:
        terms = " + ".join(f"{w:.2f} x {m}" for m, w in sorted(weights.items()))
        lines.append(f"score = {terms} (each on 0-1, 1 the better end)")
    for metric, why in sorted((result.get("not_scored") or {}).items()):
        lines.append(f"  not in the score: {metric} ({why})")
    for gate in result.get("unchecked_gates") or []:
        lines.append(f"  gate not checked: {gate} (no checkpoint has the metric)")
    lines.append(f"{'step':>8}  {'score':>7}  {'95% CI':<14}  verdict")
    for c in result.get("checkpoints", []):
        if c["best"]:
            verdict = "BEST"
        elif c["disqualified"]:
            verdict = "disqualified: " + "; ".join(c["disqualified"])
        elif c["score"] is None:
            verdict = "not scored: no values of " + ", ".join(c["missing"])
        elif c["indistinguishable"]:
            verdict = "cannot be told apart from the best"
        else:
            verdict = f"worse than the best by {_num(c['diff'])}"
        if c.get("complete") is False:
            verdict += " (still being scored)"
        lines.append(f"{c['step']:>8}  {_num(c['score']):>7}  "
                     f"{_ci(c['ci_low'], c['ci_high']):<14}  {verdict}")
    return lines


def compare_lines(result: Mapping[str, Any]) -> list[str]:
    """Each metric's change b - a with its CI and p, flagged when Holm keeps it."""
    a, b = result["a"], result["b"]
    conf = round(100 * result.get("confidence", 0.95))
    lines = [
        f"a = {a['run']}@{a['step']}, b = {b['run']}@{b['step']}: {result['probes']} probes, "
        f"paired by {result['paired_by']}",
        f"{'metric':<34} {'a':>9} {'b':>9} {'b - a':>9}  {f'{conf}% CI':<20} {'p':>8}",
    ]
    metrics = result.get("metrics") or {}
    for name, m in metrics.items():
        mark = ""
        if m["significant"]:
            mark = " *" + (f" {m['better']} better" if m["better"] else "")
        p = "-" if m["p_value"] is None else f"{m['p_value']:.2g}"
        lines.append(f"{name:<34} {_num(m['a']):>9} {_num(m['b']):>9} {_num(m['delta']):>9}  "
                     f"{_ci(m['ci_low'], m['ci_high']):<20} {p:>8}{mark}")
    tested = sum(1 for m in metrics.values() if m["p_value"] is not None)
    lines.append(f"* significant (Wilcoxon signed-rank, Holm over {tested} metrics)")
    for name, w in (result.get("win_rates") or {}).items():
        for side in ("a", "b"):
            if side in w:
                s = w[side]
                against = ("a itself" if side == "b" and w.get("b_against_a")
                           else f"step {s['baseline_step']}")
                lines.append(f"win rate {name} at {side}: {_num(s['mean'])} "
                             f"({_ci(s['ci_low'], s['ci_high'])}) against {against}")
    for name, v in (result.get("set_level") or {}).items():
        lines.append(f"set-level {name}: a {_num(v['a'])}, b {_num(v['b'])}, "
                     f"b - a {_num(v['delta'])} (one value per checkpoint: no CI)")
    return lines
