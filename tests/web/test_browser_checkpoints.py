"""Checkpoint mode in Debian's Chromium: the run page's Checkpoints section follows a job
from queued to scored, live, and shows a failed one with its reason; the dead-letter page
lists the failed job, and its Requeue button brings it back once the folder is restored.

Real parts throughout: the API (uvicorn), the scoring worker, a generation worker with
the transformers generator hosting the tiny policy, Redis, SQLite, the browser.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from judgeserve import read
from judgeserve.generation_worker import GenerationWorker
from judgeserve.testing.tiny_policy import FRUITS, TinyPolicy, cached_tiny_policy, tiny_probes

from .conftest import Stack, screenshot

pytest.importorskip("peft", reason="needs peft (pip install 'judgeserve[generator]')")

RUN = "ckpt-web"
PROBES = tiny_probes(4)
# The order a job's states go in; the page may skip some between two refreshes.
ORDER = ["queued", "generating", "generated", "scored"]


@pytest.fixture(scope="module")
def policy() -> TinyPolicy:
    return cached_tiny_policy()


@pytest.fixture
def generation(stack: Stack, policy: TinyPolicy) -> Iterator[GenerationWorker]:
    """A generation worker thread beside the stack's API and scoring worker."""
    import torch

    from judgeserve.generator.transformers import TransformersGenerator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread decodes, the rest score
    generator = TransformersGenerator(str(policy.base), max_adapters=2)
    worker = GenerationWorker(stack.settings, generator=generator)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=60)
        worker.close()
        generator.close()
        torch.set_num_threads(threads)


def _states_seen(page: Any, step: int) -> list[str]:
    return list(page.evaluate(f"() => window.__jobStates[{step}] || []"))


@pytest.mark.timeout(300)
def test_the_checkpoints_section_follows_jobs_live(
    stack: Stack, policy: TinyPolicy, page: Any, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    out = tmp_path / "out"
    good, gone = out / "checkpoint-100", out / "checkpoint-200"
    shutil.copytree(policy.adapter("a"), good)
    shutil.copytree(policy.adapter("b"), gone)
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        body = {"probes": [{"id": p.id, "prompt": p.prompt} for p in PROBES],
                "generation": {"max_new_tokens": 8, "samples": 0}}
        assert http.put(f"/v1/runs/{RUN}/probes", json=body).status_code == 200
        for step, path in ((100, good), (200, gone)):
            r = http.post(f"/v1/runs/{RUN}/checkpoints", json={"step": step, "path": str(path), "kind": "lora"})
            assert r.status_code == 202, r.text
    shutil.rmtree(gone)  # save_total_limit got there first

    page.goto(f"{stack.url}/runs/{RUN}")
    page.wait_for_selector("#live-status.on")
    section = page.locator("#checkpoint-jobs")
    for step in (100, 200):
        assert section.locator(f'tr[data-step="{step}"] .job-state').inner_text() == "queued"
    # Record every state a row shows from now on, and mark the document: it must not reload.
    page.evaluate(
        """() => {
            window.__stayed = true;
            window.__jobStates = {};
            const note = () => document.querySelectorAll('#checkpoint-jobs tr[data-step]').forEach(tr => {
                const seen = (window.__jobStates[tr.dataset.step] ||= []);
                const state = tr.querySelector('.job-state').textContent.trim();
                if (seen[seen.length - 1] !== state) seen.push(state);
            });
            note();
            new MutationObserver(note).observe(document.getElementById('checkpoint-jobs'),
                                               {childList: true, subtree: true});
        }"""
    )
    request.getfixturevalue("generation")  # the generator starts only now

    page.wait_for_selector('#checkpoint-jobs tr[data-step="100"] .job-state-scored', timeout=120_000)
    page.wait_for_selector('#checkpoint-jobs tr[data-step="200"] .job-state-failed', timeout=30_000)
    assert page.evaluate("() => window.__stayed") is True  # swapped in place, never reloaded
    seen = _states_seen(page, 100)
    assert seen[0] == "queued" and seen[-1] == "scored", seen
    assert [ORDER.index(s) for s in seen] == sorted(ORDER.index(s) for s in seen), seen
    assert _states_seen(page, 200)[-1] == "failed"

    scored = section.locator('tr[data-step="100"]')
    made_by = scored.locator("td").nth(3).inner_text()
    assert made_by.startswith("transformers") and str(policy.base) in made_by
    assert scored.locator("td").nth(4).inner_text() == str(len(PROBES))
    failed = section.locator('tr[data-step="200"]')
    reason = f"checkpoint folder gone: {gone} (deleted by save_total_limit?)"
    assert failed.locator(".job-reason").inner_text() == reason
    assert failed.locator("a").count() == 1  # the dead-letter link; no step link: no samples
    screenshot(page, "run-checkpoints")

    # The scored job's step: its samples, made by adapter a.
    scored.locator("td").first.locator("a").click()
    page.wait_for_url(f"**/runs/{RUN}/steps/100")
    stored = read.step_samples(stack.store, RUN, 100, limit=100)
    assert {s["completion"].split()[0] for s in stored} == {FRUITS["a"]}
    assert page.locator("tr[data-sample]").count() == len(PROBES)

    # From the failed job to the dead letters, then requeued once the folder is back.
    page.go_back()
    page.locator('#checkpoint-jobs tr[data-step="200"] a.job-deadletter').click()
    page.wait_for_url("**/deadletter#checkpoint-jobs")
    row = page.locator("tr[data-deadletter-job]")
    assert row.count() == 1
    assert row.locator("summary").inner_text() == reason
    assert row.locator("code").inner_text() == str(gone)
    screenshot(page, "deadletter-checkpoints")
    shutil.copytree(policy.adapter("b"), gone)
    row.locator("button", has_text="Requeue").click()
    page.wait_for_selector("text=No failed checkpoint jobs.")
    page.goto(f"{stack.url}/runs/{RUN}")
    page.wait_for_selector('#checkpoint-jobs tr[data-step="200"] .job-state-scored', timeout=120_000)
    stored = read.step_samples(stack.store, RUN, 200, limit=100)
    assert {s["completion"].split()[0] for s in stored} == {FRUITS["b"]}
