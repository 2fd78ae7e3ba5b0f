"""schemathesis against the server's own ``/openapi.json``: generated requests to every operation
that does not load Gemma get no 5xx, and every response conforms to the document (status code,
content type, body schema). Bounded: a few examples per operation, derandomised (same cases each run).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import SpawnedServer

from .conftest import base_url

EXAMPLES = 12  # per operation: ~15 operations, about 180 requests
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_generated_requests_get_no_5xx_and_conform_to_the_schema(api_server: SpawnedServer) -> None:
    url = base_url(api_server)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=30)
    # These load the local Gemma (seconds to minutes a call): tests/api/test_model_routes.py covers them.
    schema = schema.exclude(path_regex=r"^/v1/(reason|research)$").exclude(
        method="POST", path="/v1/agent/runs"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(op.label for op in operations)
    assert "POST /v1/search" in labels and "GET /v1/documents/{id}" in labels and len(labels) >= 12
    statuses: dict[str, set[int]] = {label: set() for label in labels}
    for operation in operations:
        try:
            fuzz(operation, url, statuses[operation.label])
        except Exception as exc:
            pytest.fail(f"{operation.label}: {exc}")
    # The generated requests reached the routes (not only the validation in front of them).
    for label in ("POST /v1/search", "POST /v1/memory/recall", "GET /v1/documents", "GET /metrics"):
        assert 200 in statuses[label], (label, statuses[label])


def fuzz(operation: Any, url: str, seen: set[int]) -> None:
    """Send ``EXAMPLES`` generated requests to one operation; note the statuses in ``seen``."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        seen.add(case.call_and_validate(base_url=url, checks=CHECKS, timeout=60).status_code)

    run()
