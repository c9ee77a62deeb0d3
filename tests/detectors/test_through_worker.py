"""Every detector through the real path: index built by the CLI, samples sent by the SDK,
scored by a worker with the registered scorers, read back through the API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx

from judgeserve import JudgeClient
from judgeserve.settings import Settings
from judgeserve.worker import Worker

from ..conftest import LiveServer, run_cli, wait_for

TRAINING = [
    "The lighthouse keeper of Marrow Point wrote every evening in a leather book about the "
    "ships that passed, the colour of the sea, the number of gulls on the rocks, and the "
    "letters he never sent to his sister who lived in the city beyond the hills and the river.",
    "Copper kettles were hammered by hand in the old town square, where the smiths sang "
    "songs about winter, the mountain roads, and the merchants who came each spring.",
]
UNSEEN = ("A short note about growing tomatoes on a balcony in a windy place, with stakes "
          "and plenty of water during the hottest weeks of summer.")


def test_detectors_score_a_submitted_batch(settings: Settings, tmp_path: Path, minilm: Any) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TRAINING))
    built = run_cli("index", "build", str(data), "--run", "det-run", "--min-span", "20",
                    env={"JUDGESERVE_INDEX_DIR": str(settings.index_dir)})
    assert built.returncode == 0, built.stderr
    assert "indexed" in built.stdout

    samples = [
        {"id": "copied", "prompt": "Tell me about the keeper.", "completion": TRAINING[0], "probe_id": "p1"},
        {"id": "looping", "prompt": "Describe the morning.",
         "completion": "The morning is " + "bright and warm and " * 12 + "done.", "probe_id": "p2"},
        {"id": "clean", "prompt": "Gardening tips?", "completion": UNSEEN, "probe_id": "p3",
         "reference": "Grow tomatoes on a balcony with stakes and water them in summer."},
        {"id": "cut", "prompt": "List fruit.", "completion": "Apples, pears, and", "probe_id": "p4"},
    ]
    worker = Worker(settings, hooks=())
    api = LiveServer(settings).start()
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        with JudgeClient(api.url, run="det-run", spool_dir=settings.spool_dir) as client:
            client.submit(100, samples)

        def step() -> dict:
            return httpx.get(f"{api.url}/v1/runs/det-run/steps/100").json()

        wait_for(lambda: "diversity.distinct2" in step().get("aggregates", {}), timeout=180)
        body = step()
        scores = {s["id"]: {sc["scorer"]: sc for sc in s["scores"]} for s in body["samples"]}
        for family in ("length.tokens", "repetition.rep4", "repetition.loop", "truncation.truncated",
                       "truncation.empty", "memorization.memorized", "memorization.longest_span"):
            assert all(family in scores[i] for i in scores), family
        assert scores["copied"]["memorization.memorized"]["value"] is True
        assert scores["clean"]["memorization.memorized"]["value"] is False
        assert scores["looping"]["repetition.loop"]["value"] is True
        start, end = scores["looping"]["repetition.loop"]["details"]["start"], scores["looping"]["repetition.loop"]["details"]["end"]
        assert "bright and warm" in samples[1]["completion"][start:end]
        assert scores["clean"]["repetition.loop"]["value"] is False
        assert scores["cut"]["truncation.truncated"]["value"] is True
        assert "reference.semscore" in scores["clean"] and "reference.semscore" not in scores["copied"]
        aggs = body["aggregates"]
        assert aggs["memorization.memorized"]["n"] == 4 and aggs["memorization.memorized"]["mean"] == 0.25
        for metric in ("diversity.distinct1", "diversity.self_bleu", "diversity.vendi", "repetition.rep4"):
            assert metric in aggs, metric
        series = httpx.get(f"{api.url}/v1/runs/det-run/metrics").json()["metrics"]
        assert series["memorization.memorized"][0]["step"] == 100
    finally:
        worker.stop()
        t.join(timeout=60)
        worker.close()
        api.stop()
