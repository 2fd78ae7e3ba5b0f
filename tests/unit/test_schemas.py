"""Compacted output schemas accept and reject exactly what pydantic's schemas do."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from mcp_gemma.rag.models import SearchHit, SearchResult
from mcp_gemma.server.schemas import compact_schema


class Inner(BaseModel):
    name: str = Field(max_length=5)
    score: float | None = None


class Outer(BaseModel):
    items: list[Inner]
    best: Inner | None = None
    note: str | None = Field(default=None, description="free text")


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def _valid(schema: dict[str, Any], instance: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


@pytest.mark.parametrize(
    "instance",
    [
        {"items": [{"name": "a", "score": None}, {"name": "b", "score": 1.5}], "best": None},
        {"items": [], "best": {"name": "abc"}, "note": "x"},
        {"items": [{"name": "toolong"}]},
        {"items": [{"name": "a", "score": "high"}]},
        {"items": [{"score": 1.0}]},
        {"items": [], "best": 3},
        {"items": [], "note": 5},
        {"items": None},
    ],
)
def test_same_verdicts_as_the_pydantic_schema(instance: dict[str, Any]) -> None:
    original = Outer.model_json_schema()
    compact = compact_schema(original)
    assert "$ref" not in str(compact) and "anyOf" not in str(compact)
    assert _valid(compact, instance) == _valid(original, instance)


def test_search_result_schema_has_no_references_and_validates_a_result() -> None:
    hit = SearchHit(chunk_id=1, doc_id="d", ordinal=0, score=0.5, text="t", start=0, end=1, metadata={})
    data = SearchResult(query="q", mode="vector", hits=[hit], searched_chunks=1, took_ms=0.1).model_dump(
        mode="json"
    )
    compact = compact_schema(SearchResult.model_json_schema())
    assert "$defs" not in compact
    assert _valid(compact, data)
    assert not _valid(compact, {**data, "hits": [{**data["hits"][0], "vector_score": "x"}]})


def test_recursive_schema_is_left_as_emitted() -> None:
    schema = Tree.model_json_schema()
    assert compact_schema(schema) == schema


def test_input_is_not_mutated() -> None:
    schema = Outer.model_json_schema()
    before = repr(schema)
    compact_schema(schema)
    assert repr(schema) == before


class Detailed(BaseModel):
    detail: dict[str, str | int | float | bool | None] = {}
    pick: int | str = 0


@pytest.mark.parametrize(
    "instance",
    [
        {"detail": {"a": "x", "b": 1, "c": 1.5, "d": True, "e": None}, "pick": "s"},
        {"detail": {"a": [1]}},
        {"detail": {"a": {"b": 1}}},
        {"pick": 1.5},
        {"pick": None},
        {"detail": []},
    ],
)
def test_a_union_of_plain_types_becomes_one_type_list(instance: dict[str, Any]) -> None:
    original = Detailed.model_json_schema()
    compact = compact_schema(original)
    assert compact["properties"]["detail"]["additionalProperties"] == {
        "type": ["string", "integer", "number", "boolean", "null"]
    }
    assert compact["properties"]["pick"]["type"] == ["integer", "string"]
    assert _valid(compact, instance) == _valid(original, instance)
