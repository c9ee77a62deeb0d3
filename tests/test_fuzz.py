"""Schemathesis over the OpenAPI spec against a real server: no input makes a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from judgeserve.settings import Settings

from .conftest import LiveServer


@pytest.mark.timeout(600)
def test_no_input_makes_a_server_error(settings: Settings) -> None:
    server = LiveServer(settings).start()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 9
        for op in operations:

            @given(case=op.as_strategy())
            @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: Any) -> None:
                response = case.call()
                assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])

            check()
    finally:
        server.stop()
