"""``reason(json_schema=...)`` through a real MCP client: structured output from the local Gemma 270M,
decoded under the schema's grammar (every kind of mask in one schema), and bad schemas refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gemma.llm.grammar import validate
from mcp_gemma.settings import Settings
from tests.integration.test_reason_tool import client_for, reason_models_dir, refused, with_gemma

__all__ = ["reason_models_dir"]  # the session fixture, shared with test_reason_tool

pytestmark = pytest.mark.anyio

CITY = {
    "type": "object",
    "properties": {
        "kind": {"const": "city"},
        "name": {"type": "string", "maxLength": 30},
        "country": {"enum": ["France", "Germany", "Italy", "Spain"]},
        "is_capital": {"type": "boolean"},
        "founded": {"type": "integer"},
        "area_km2": {"type": "number"},
        "rivers": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2},
    },
    "required": ["kind", "name", "country", "is_capital", "founded", "area_km2", "rivers"],
}


async def test_unsupported_or_invalid_schemas_are_refused_without_loading(settings: Settings) -> None:
    async with client_for(settings) as client:
        q = "What is the capital of France?"
        await refused(
            client,
            "keyword 'pattern' (at schema.properties.a)",
            question=q,
            json_schema={"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}},
        )
        await refused(client, "not a valid JSON schema", question=q, json_schema={"type": "nonsense"})
        await refused(client, "needs a 'type' among", question=q, json_schema={"type": ["string", "null"]})
        await refused(client, "use brain='local'", question=q, json_schema=CITY, brain="client")
        health = await client.call_tool("health_check", {})
    llm = next(c for c in health.structured_content["components"] if c["kind"] == "llm")  # type: ignore[index]
    assert llm["loaded"] is False


@pytest.mark.model
async def test_reason_returns_schema_valid_json_from_the_local_model(
    settings: Settings, reason_models_dir: Path
) -> None:
    async with client_for(with_gemma(settings, reason_models_dir)) as client:
        with anyio.fail_after(300):
            result = await client.call_tool(
                "reason",
                {
                    "question": "Describe Paris as JSON.",
                    "context": "Paris, the capital of France, was founded in 250 BC on the Seine.",
                    "json_schema": CITY,
                    "max_new_tokens": 120,
                },
            )
    assert not result.is_error, result.content
    out: dict[str, Any] = result.structured_content  # type: ignore[assignment]
    validate(out["structured"], CITY)
    assert json.loads(out["answer"]) == out["structured"]
    assert (out["brain_used"], out["finish_reason"], out["prompt_style"]) == ("local", "stop", "completion")
    # the 270M base model's greedy answer: the structure is the grammar's, the values are the model's
    # (is_capital was a near-tie: false before the int8 prompt products' contract changed, true after)
    assert out["structured"] == {
        "kind": "city",
        "name": "Paris",
        "country": "France",
        "is_capital": True,
        "founded": 250,
        "area_km2": 1000000000000000,
        "rivers": ["Paris"],
    }
