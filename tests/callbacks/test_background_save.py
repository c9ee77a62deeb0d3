"""Checkpoint mode's own save (``checkpoint_save="background"``): the trainer waits only
for a copy of the weights in memory; a thread writes the folder and submits it once it is
complete. With real parts: an HF ``Trainer`` on a tiny GPT-2, the API, the transformers
generator, a scoring worker; and a watcher in another process that looks at the folder
while it is being written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from judgeserve import JudgeClient, read
from judgeserve.callbacks.hf import JudgeCallback
from judgeserve.callbacks.snapshot import BackgroundSaver
from judgeserve.settings import Settings
from judgeserve.store import Store

from ..conftest import wait_for
from .conftest import Generating, Stack, Tiny
from .test_checkpoint_mode import hf_trainer, lora_model

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


class Weights:
    """What the weights were at the end of each step (read after the judge callback)."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, Any]] = {}

    def callback(self) -> Any:
        from transformers import TrainerCallback

        outer = self

        class Record(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                model = kwargs["model"]
                if hasattr(model, "peft_config"):
                    from peft import get_peft_model_state_dict

                    sd = get_peft_model_state_dict(model)
                else:
                    sd = model.state_dict()
                outer.at[state.global_step] = {k: v.detach().clone() for k, v in sd.items()}

        return Record()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["full", "lora"])
def test_the_trainer_copies_a_thread_writes_and_the_generator_reads_what_was_copied(
    kind: str, tiny: Tiny, tmp_path: Path, stack: Callable[[str], Stack],
    generating: Callable[[], Generating], settings: Settings,
) -> None:
    if kind == "lora":
        pytest.importorskip("peft")
    s = stack("rules: []")
    generating()
    run = f"bg-{kind}"
    client = JudgeClient(s.url, run=run, spool_dir=tmp_path / "spool")
    cb = JudgeCallback(
        tiny.probes, client=client, mode="checkpoint", checkpoint_save="background",
        every_n_steps=10, max_new_tokens=8, base_model=str(tiny.model_dir) if kind == "lora" else None,
    )
    weights = Weights()
    out = tmp_path / "out"
    model = lora_model(tiny) if kind == "lora" else tiny.model()
    trainer = hf_trainer(tiny, model, out, cb, steps=25, save_strategy="no")
    trainer.add_callback(weights.callback())  # after the judge callback: sees what it copied
    trainer.train()
    try:
        assert client.flush(20) and client.errors == []
        # Saved by judgeserve at 10, 20 and at the end (25); the trainer saved nothing.
        assert cb.runner.probed == [10, 20, 25] and cb.runner.generation_s == 0.0
        assert cb.runner.saver.errors == []
        root = out / "judgeserve"
        assert sorted(p.name for p in out.iterdir()) == ["judgeserve"]
        assert sorted(p.name for p in root.iterdir()) == ["step-10", "step-20", "step-25"]  # no partial left
        for record in cb.runner.saver.records:
            assert record.write_s is not None and record.done.is_set()
        # Each folder holds the weights as they were at its step (training went on while
        # it was written), in the format the generator loads.
        weight_file = "adapter_model.safetensors" if kind == "lora" else "model.safetensors"
        for step in (10, 20, 25):
            saved = safetensors_torch.load_file(str(root / f"step-{step}" / weight_file))
            expected = weights.at[step]
            assert saved and set(saved) <= set(expected), (set(saved) ^ set(expected))
            for name, tensor in saved.items():
                assert torch.equal(tensor, expected[name]), (step, name)
        changed = [n for n, t in safetensors_torch.load_file(str(root / "step-10" / weight_file)).items()
                   if not torch.equal(t, weights.at[25][n])]
        assert changed, "step 10's weights equal the final ones: the test shows nothing"
        store = Store(settings.database_url)
        try:
            wait_for(lambda: [j["state"] for j in read.list_checkpoint_jobs(store, run)] == ["scored"] * 3,
                     timeout=180, every=0.2)
            for job in read.list_checkpoint_jobs(store, run):
                assert job["path"] == str(root / f"step-{job['step']}") and job["kind"] == kind
                assert job["samples"] == 6 and job["attempts"] == 1
            samples = read.step_samples(store, run, 20, limit=100)
            assert {x["checkpoint"] for x in samples} == {str(root / "step-20")}
        finally:
            store.close()
    finally:
        client.close(10)


WATCHER = textwrap.dedent("""
    import json, os, sys
    root, stop, out = sys.argv[1:4]
    seen = set()
    while not os.path.exists(stop):
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            continue
        for name in names:
            try:
                files = tuple(sorted((e.name, e.stat().st_size) for e in os.scandir(os.path.join(root, name))))
            except FileNotFoundError:  # renamed away between the listing and the look
                continue
            seen.add((name, files))
    with open(out, "w") as f:
        json.dump(sorted(seen), f)
""")


@pytest.mark.timeout(120)
def test_a_folder_being_written_is_never_seen_under_its_name(tmp_path: Path, tiny: Tiny) -> None:
    """Another process (as a generator would) looks at the folder all the time it is
    being written: under its own name it only ever sees the complete folder, and the job
    is submitted after that (the submit callback finds every weight in place)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # ~80 MB of weights: writing them takes long enough for the watcher to see it happen.
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny.tokenizer), n_positions=64, n_embd=512,
                                       n_layer=6, n_head=8))
    root = tmp_path / "judgeserve"
    root.mkdir()
    stop, seen_file = tmp_path / "stop", tmp_path / "seen.json"
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(root), str(stop), str(seen_file)])
    submitted: dict[str, dict[str, Any]] = {}
    expected: dict[str, dict[str, Any]] = {}

    def submit(folder: Path) -> None:  # what runner.save_checkpoint does then: submit
        submitted[folder.name] = safetensors_torch.load_file(str(folder / "model.safetensors"))

    saver = BackgroundSaver()
    try:
        time.sleep(0.5)  # the watcher is looking
        for step in (1, 2, 3):
            expected[f"step-{step}"] = {k: v.clone() for k, v in model.state_dict().items()}
            saver.save(step, model, tiny.tokenizer, root / f"step-{step}", then=submit)
            with torch.no_grad():  # "training" goes on while the folder is written
                for p in model.parameters():
                    p.add_(1.0)
        assert saver.wait(60) and saver.errors == []
    finally:
        stop.touch()
        watcher.wait(30)
    final = {p.name: tuple(sorted((f.name, f.stat().st_size) for f in p.iterdir())) for p in root.iterdir()}
    assert sorted(final) == ["step-1", "step-2", "step-3"]
    seen = [(name, tuple(tuple(f) for f in files)) for name, files in json.loads(seen_file.read_text())]
    # Under their names, the watcher only ever saw the complete folders ...
    for name, files in seen:
        if not name.startswith("."):
            assert files == final[name], (name, files, final[name])
    # ... though it did see folders being written (under their temporary names).
    partial = [name for name, files in seen if ".partial-" in name and files]
    assert partial, "the watcher never saw a write in progress: it proves nothing here"
    # Submitted after the rename, with the weights of its step (not the later ones).
    assert sorted(submitted) == ["step-1", "step-2", "step-3"]
    for name, tensors in submitted.items():
        for key, t in tensors.items():
            assert torch.equal(t, expected[name][key]), (name, key)
