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
