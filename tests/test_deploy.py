"""deploy/compose.yaml publishes the API only: Ray's dashboard (whose Jobs API runs any code)
and the judge (no auth) stay on an internal network."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose.yaml"


def test_only_the_api_is_published_and_the_rest_is_internal() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services, networks = spec["services"], spec["networks"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"api"}
    internal = {name for name, net in networks.items() if (net or {}).get("internal") is True}
    assert internal
    for name in ("ray-head", "redis", "postgres"):
        assert set(services[name]["networks"]) <= internal, name
    head = services["ray-head"]["command"]
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    # The API's local token outlives the container; its auth is the default (on).
    api = services["api"]
    assert "JUDGESERVE_AUTH" not in api["environment"]
    assert any(v.endswith(":/data") for v in api["volumes"]) and api["environment"]["JUDGESERVE_DATA_DIR"] == "/data"


def test_the_gpu_config_puts_the_judge_and_the_generator_on_vllm_on_one_gpu() -> None:
    """deploy/serve-gpu.yaml (the GPU path; untested on a GPU here) is a valid Serve config
    whose two applications run vLLM, each asking Ray for half a GPU and taking at most
    its share of the GPU's memory."""
    import pytest

    pytest.importorskip("ray")
    from ray.serve.schema import ServeDeploySchema

    from judgeserve.generator.serve import DeploymentArgs as GeneratorArgs
    from judgeserve.judge.serve import DeploymentArgs as JudgeArgs

    text = (COMPOSE.parent / "serve-gpu.yaml").read_text()
    config = ServeDeploySchema.model_validate(yaml.safe_load(text))
    apps = {a.name: a for a in config.applications}
    assert set(apps) == {"judge", "generator"}
    JudgeArgs.model_validate(apps["judge"].args)
    GeneratorArgs.model_validate(apps["generator"].args)
    gpus = 0.0
    for app in apps.values():
        assert app.args["backend"] == "vllm"
        (deployment,) = app.deployments
        share = deployment.ray_actor_options.num_gpus
        assert 0 < share <= 1 and app.args["options"]["gpu_memory_utilization"] <= share * 0.9
        gpus += share
    assert gpus == 1.0  # both on one GPU
    assert "NOT TESTED on a GPU" in text
