"""Mutation testing of the modules that carry judgeserve's guarantees (`make mutate`).

Each target below is one module (or the few files of one concern) with the test files that
cover it. A target runs in its own scratch copy of the repository (.mutate/<target>/), because
mutmut reads its settings from the pyproject.toml of the directory it runs in and writes its
mutated tree to ./mutants: one copy per target keeps each target's files and tests apart and
lets targets run one at a time in the background. mutmut runs the target's tests once to learn
which test reaches which function, then, for each mutant, only those tests.

The modules hold about 8,000 mutants and a mutant costs 1-10 s of tests here: all of them take
five hours on two cores. So a run tests a random sample of each target's mutants (--sample,
60 by default, a fixed seed so that runs compare), which finishes in about 30 minutes and
estimates each score to within about ±10 points (the table prints the 95 % interval);
--sample 0 tests every mutant. Not in CI and not in `make test`. One worker process
(--max-children 1) by default, since the machine is shared.

    python scripts/mutate.py                  # every target, then the table
    python scripts/mutate.py --sample 0 auth  # every mutant of one target
    python scripts/mutate.py repetition auth  # some targets
    python scripts/mutate.py --report         # the table of the runs already made
    python scripts/mutate.py --survivors repetition   # the diff of each surviving mutant
    python scripts/mutate.py --retest repetition      # survivors again, against today's tests

Functions under a decorator other than staticmethod/classmethod (the numba kernels of
repetition and memorization) are never mutated by mutmut: their Python twins are, where the
detector has one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutate"
# Tests that need a browser, Ray or minutes of training stay out: each mutant reruns its tests.
# The first test of a run imports transformers and loads MiniLM: on a loaded machine that alone
# can pass the suite's 120 s per-test limit, hence 300 s here.
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-o", "timeout=300"]
# What the tests read beside the package (rubrics, prompts, deploy files, README).
ALSO_COPY = ["prompts", "rubrics", "deploy", "docs", "README.md", "Makefile", "benchmarks"]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".mutate", "mutants", "__pycache__", "*.egg-info", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", "*.db", "*.db-wal", "*.db-shm", "judgeserve-indexes",
    "test-artifacts", "build", "dist",
)


@dataclass(frozen=True)
class Target:
    """One module under mutation: the files mutated and the tests that should catch them."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    # numba kernels (@jit) to run as plain Python, so that mutmut, which leaves decorated
    # functions alone, mutates them too: the loops that decide what a detector reports.
    unjit: tuple[str, ...] = ()
    # Tests left out: ones whose timing does not hold on a loaded machine under mutmut.
    deselect: tuple[str, ...] = ()
    # Seconds added to a mutant's expected test time before it counts as hanging (the limit
    # is (expected + this) x 10 x 2 CPU seconds): small where the tests are fast and a
    # mutated loop may never end.
    timeout_constant: float = 10.0


TARGETS: dict[str, Target] = {
    "queue": Target(("judgeserve/stream.py",), ("tests/test_stream.py",)),
    "worker": Target(
        ("judgeserve/worker.py",),
        # Not test_reliability.py: live servers and SIGTERMed subprocesses, minutes a mutant.
        # The direct tests first (a batch, the loop, checkpoints, `judgeserve worker`: seconds);
        # test_outages.py for liveness (/healthz) and real locks, test_stream.py for reclaims.
        (
            "tests/test_worker_batches.py", "tests/test_worker_loop.py",
            "tests/test_outages.py", "tests/test_stream.py",
        ),
        # A Redis that never answers, through the API: no worker in it, and its 5 s bound
        # failed the clean run on a loaded machine (5.7 s).
        deselect=("tests/test_outages.py::test_redis_that_never_answers_times_out",),
    ),
    "store": Target(
        ("judgeserve/store/__init__.py", "judgeserve/store/tables.py", "judgeserve/store/judging.py"),
        # The store is written by the worker, the API, the alert engine and the label
        # commands: their tests are the ones that check what it wrote.
        (
            "tests/test_store.py", "tests/test_stream.py", "tests/test_checkpoints_api.py",
            "tests/test_labels.py", "tests/test_scorer_status.py", "tests/alerts/test_engine.py",
            "tests/alerts/test_completeness.py", "tests/judge/test_judge_cost.py",
            "tests/test_store_judging.py", "tests/test_store_writes.py",
        ),
        # It runs the toy judge: torch in a process mutmut forked crashes (SIGSEGV), which
        # would count against the store.
        deselect=(
            "tests/judge/test_judge_cost.py::test_collapsed_checkpoints_cost_one_call_per_distinct_answer",
        ),
    ),
    "aggregates": Target(("judgeserve/aggregates.py",), ("tests/detectors/test_aggregates.py",)),
    "alerts": Target(
        ("judgeserve/alerts/evaluate.py",),
        (
            "tests/alerts/test_evaluate.py", "tests/alerts/test_evaluate_edges.py",
            "tests/alerts/test_completeness.py",
        ),
    ),
    "repetition": Target(
        ("judgeserve/detectors/repetition.py", "judgeserve/detectors/_near_periodic.py"),
        (
            "tests/detectors/test_repetition.py", "tests/detectors/test_loop_settings.py",
            "tests/detectors/test_repetition_details.py",
        ),
        # Not _ascii_tokens: its FNV hash relies on int64 wrap-around, which Python's ints lack.
        unjit=(
            "_distinct", "_runs", "_record", "_classify", "_previous", "_slack", "_periods",
            "_prefilter", "_covered", "_densest", "_regions",
        ),
    ),
    "memorization": Target(
        (
            "judgeserve/detectors/memorization.py",
            "judgeserve/detectors/_ngram_index.py",
            "judgeserve/detectors/_index_build.py",
        ),
        (
            "tests/detectors/test_memorization.py",
            "tests/detectors/test_memorization_index.py",
        ),
        timeout_constant=1.0,
    ),
    "sdk": Target(
        ("judgeserve/client/agent.py", "judgeserve/client/journal.py"),
        ("tests/test_journal.py", "tests/test_client.py", "tests/test_agent.py"),
    ),
    "auth": Target(
        ("judgeserve/auth.py",),
        ("tests/test_auth.py",),
        # Its SDK agent must give up on a 401 within seconds: it failed mutmut's clean run.
        deselect=("tests/test_auth.py::test_revoked_token_keeps_the_samples_for_a_good_one",),
    ),
    "judge": Target(
        ("judgeserve/judge/prompt.py", "judgeserve/judge/scorer.py", "judgeserve/judge/verdicts.py"),
        # Not the tests that load the toy judge (a model per run): verdicts are tested on
        # distributions, the scorer through a judge that is not configured or unreachable,
        # and both end to end against a local server with canned logprobs (no torch).
        (
            "tests/judge/test_judge_prompt.py", "tests/judge/test_judge_fence.py",
            "tests/judge/test_judge_verdicts.py", "tests/judge/test_judge_unreachable.py",
            "tests/test_rubric_names.py", "tests/judge/test_judge_canned.py",
        ),
    ),
}

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), grouped for the table.
KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}


def _mutmut_config(target: Target) -> str:
    """The [tool.mutmut] table appended to the scratch copy's pyproject.toml."""
    return "\n".join([
        "",
        "[tool.mutmut]",
        'source_paths = ["judgeserve"]',
        f"only_mutate = {json.dumps(list(target.files))}",
        f"pytest_add_cli_args_test_selection = {json.dumps(list(target.tests))}",
        f"pytest_add_cli_args = {json.dumps(PYTEST_ARGS + [f'--deselect={t}' for t in target.deselect])}",
        f"also_copy = {json.dumps(ALSO_COPY)}",
        # Tests that wait on a worker or a server take wall time, not CPU: be generous.
        "timeout_multiplier = 10.0",
        f"timeout_constant = {target.timeout_constant}",
        # pytest's own output in the log: why a stats or clean run failed.
        "debug = true",
        "",
    ])


def prepare(name: str, target: Target) -> Path:
    """A fresh scratch copy of the repository for one target, its mutmut settings added."""
    work = SCRATCH / name
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(ROOT, work, ignore=IGNORED)
    with (work / "pyproject.toml").open("a") as f:
        f.write(_mutmut_config(target))
    if target.unjit:
        names = "|".join(target.unjit)
        for file in target.files:
            path = work / file
            path.write_text(re.sub(rf"^@jit\n(def (?:{names})\()", r"\1", path.read_text(),
                                   flags=re.MULTILINE))
    # PYTHONPATH names mutants/ (below): it must exist before Python starts, or the import
    # system caches it as absent and the tests' own package is not found.
    (work / "mutants").mkdir()
    return work


# mutmut's first phase only, to learn the mutants' names before choosing a sample of them.
_GENERATE = ("import mutmut.__main__ as m; m.copy_src_dir(); m.copy_also_copy_files(); "
             "m.setup_source_paths(); m.create_mutants(1)")


def _all_mutants(work: Path, target: Target) -> list[str]:
    subprocess.run([sys.executable, "-c", _GENERATE], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    names: list[str] = []
    for file in target.files:
        names += json.loads((work / "mutants" / f"{file}.meta").read_text())["exit_code_by_key"]
    return sorted(names)


def _mutmut_run(work: Path, log: Path, max_children: int, mutants: list[str]) -> int:
    """``mutmut run`` in a scratch copy (all its mutants, or those named), output to ``log``."""
    # Subprocesses (the SDK's delivery agent, a served app) import the mutated package too.
    env = dict(os.environ, PYTHONPATH=str(work / "mutants"))
    with log.open("w") as out:
        return subprocess.call(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *mutants],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def run_target(name: str, target: Target, max_children: int, sample: int, seed: int) -> int:
    """Run mutmut over one target in its scratch copy; its log goes to .mutate/<name>.log."""
    work = prepare(name, target)
    started = time.monotonic()
    chosen: list[str] = []
    if sample:
        everything = _all_mutants(work, target)
        chosen = sorted(random.Random(seed).sample(everything, min(sample, len(everything))))
    rc = _mutmut_run(work, SCRATCH / f"{name}.log", max_children, chosen)
    (SCRATCH / f"{name}.seconds").write_text(f"{time.monotonic() - started:.0f}\n")
    return rc


def counts(name: str) -> dict[str, int] | None:
    """Killed / survived / timeout / no tests / other per target, from mutmut's .meta files."""
    mutants = SCRATCH / name / "mutants"
    target = TARGETS[name]
    codes: list[int | None] = []
    for file in target.files:
        meta = mutants / f"{file}.meta"
        if not meta.exists():
            return None
        codes += json.loads(meta.read_text())["exit_code_by_key"].values()
    tally = {"mutants": len(codes), "killed": 0, "survived": 0, "timeout": 0, "no tests": 0,
             "other": 0, "not run": 0}
    for code in codes:
        group = ("killed" if code in KILLED else "survived" if code in SURVIVED
                 else "timeout" if code in TIMEOUT else "no tests" if code in NO_TESTS
                 else "not run" if code is None else "other")
        tally[group] += 1
    return tally


def report(names: list[str]) -> None:
    """The table: per target, the mutants by outcome and the score.

    The score counts a timeout as caught (the mutant made the tests hang, which a run notices)
    and a mutant no test reached as not caught; mutants not run yet (an interrupted run) are
    left out of it and counted apart (a sampled run leaves most of them). The interval is
    Wilson's 95 % interval of the score, the uncertainty a sample of the mutants leaves.
    """
    head = f"{'target':<13}{'mutants':>8}{'killed':>8}{'survived':>9}{'timeout':>8}"
    print(head + f"{'no tests':>9}{'other':>7}{'not run':>8}{'score':>8}{'95% interval':>14}"
          f"{'minutes':>9}")
    for name in names:
        tally = counts(name)
        if tally is None:
            print(f"{name:<13}  (not run)")
            continue
        caught = tally["killed"] + tally["timeout"]
        tried = tally["mutants"] - tally["not run"]
        score = caught / tried if tried else 0.0
        interval = "" if not tried else "{:.0%}-{:.0%}".format(
            *binomtest(caught, tried).proportion_ci(method="wilson"))
        seconds = SCRATCH / f"{name}.seconds"
        minutes = f"{int(seconds.read_text()) / 60:.1f}" if seconds.exists() else "?"
        print(f"{name:<13}{tally['mutants']:>8}{tally['killed']:>8}{tally['survived']:>9}"
              f"{tally['timeout']:>8}{tally['no tests']:>9}{tally['other']:>7}"
              f"{tally['not run']:>8}{score:>8.0%}{interval:>14}{minutes:>9}")


def _surviving(name: str) -> dict[str, int | None]:
    """Exit code by mutant name, of the mutants of one target that no test killed."""
    left: dict[str, int | None] = {}
    for file in TARGETS[name].files:
        meta = SCRATCH / name / "mutants" / f"{file}.meta"
        left |= {key: code for key, code in json.loads(meta.read_text())["exit_code_by_key"].items()
                 if code is not None and code not in KILLED and code not in TIMEOUT}
    return left


def survivors(name: str) -> None:
    """Print the diff of every mutant of one target that no test killed."""
    for key, code in _surviving(name).items():
        print(f"### {key} (exit {code})", flush=True)
        subprocess.call([sys.executable, "-m", "mutmut", "show", key], cwd=SCRATCH / name)


def retest(name: str, max_children: int) -> int:
    """Rerun one target's surviving mutants against the tests as they are now.

    The whole run takes minutes a target; a test written to kill its survivors is checked
    in seconds. The scratch copy's tests are replaced by the repository's; mutmut collects
    coverage for the tests it has not seen, then runs only the named mutants.
    """
    work = SCRATCH / name
    keys = _surviving(name)
    if not keys:
        return 0
    shutil.rmtree(work / "tests")
    shutil.copytree(ROOT / "tests", work / "tests", ignore=IGNORED)
    shutil.rmtree(work / "mutants" / "tests", ignore_errors=True)
    shutil.copytree(ROOT / "tests", work / "mutants" / "tests", ignore=IGNORED)
    # mutmut runs only the tests its settings select: a test file added to the target since
    # the copy was made is selected too, or its tests would never reach a mutant.
    selection = f"pytest_add_cli_args_test_selection = {json.dumps(list(TARGETS[name].tests))}"
    for config in (work / "pyproject.toml", work / "mutants" / "pyproject.toml"):
        if config.exists():
            config.write_text(re.sub(r"^pytest_add_cli_args_test_selection = .*$", selection,
                                     config.read_text(), flags=re.MULTILINE))
    return _mutmut_run(work, SCRATCH / f"{name}.retest.log", max_children, list(keys))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to run (default: all): {', '.join(TARGETS)}")
    parser.add_argument("--report", action="store_true", help="only print the table")
    parser.add_argument("--survivors", action="store_true",
                        help="print the surviving mutants' diffs of the named targets")
    parser.add_argument("--retest", action="store_true",
                        help="rerun the named targets' survivors against the current tests")
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--sample", type=int, default=60,
                        help="mutants tested per target, chosen at random (0: all of them)")
    parser.add_argument("--seed", type=int, default=0, help="the sample's random seed")
    args = parser.parse_args()
    names = args.targets or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose among {', '.join(TARGETS)}")
    if args.survivors:
        for name in names:
            survivors(name)
        return 0
    if args.retest:
        for name in names:
            rc = retest(name, args.max_children)
            if rc:
                print(f"   mutmut exited {rc}: see {SCRATCH / name}.retest.log", flush=True)
    elif not args.report:
        SCRATCH.mkdir(exist_ok=True)
        for name in names:
            print(f"== {name}", flush=True)
            rc = run_target(name, TARGETS[name], args.max_children, args.sample, args.seed)
            if rc:
                print(f"   mutmut exited {rc}: see {SCRATCH / name}.log", flush=True)
    report(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
