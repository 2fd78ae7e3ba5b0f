"""Hypothesis-generated arguments for every tool, through a real client session (issue 17).

Each tool's arguments are drawn from its own input schema (what a client reads in ``tools/list``),
then some are broken on purpose: a value of the wrong type, an out-of-range number, an unknown
argument, a required one left out. Every call must come back within a time bound with a result or an
error that says something (``isError`` with a reason, never a traceback or a bare "error"). After
the run ``health_check`` answers and the data stored before it is intact (count and checksum).

The real server (in-process transport, the session's real Redis, real embeddings, the real Gemma
for ``reason`` and ``run_agent``) answers. The number of cases is bounded in the default run
(``EXAMPLES`` per tool, over a thousand in all) and ten times larger under ``pytest -m fuzz``.
Generation is derandomised so a CI failure replays.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from mcp_gemma.server.app import create_server
from mcp_gemma.settings import Settings, load_settings

pytestmark = pytest.mark.fuzz

# Tools that run the local model: few cases, small budgets (each call generates with Gemma).
MODEL_TOOLS = frozenset({"reason", "run_agent", "research_query"})
# Budgets forced down on valid calls of the model tools, so a case costs seconds, not minutes.
BUDGET_CAPS = {"max_new_tokens": 8, "max_steps": 2, "max_tokens": 8, "timeout_s": 20}
CALL_TIMEOUT_S = 120.0  # a hang guard per call, far above what any call here needs
SENTINEL_AGENT = "fzsentinel"
SENTINEL_DOCS = {
    "fz-sentinel-1": "The lighthouse keeper logs the weather at dawn and dusk.",
    "fz-sentinel-2": "Sourdough needs a starter fed with flour and water every day.",
    "fz-sentinel-3": "A sextant measures the angle between a star and the horizon.",
}
SENTINEL_MEMORIES = ["The fuzz sentinel prefers green tea.", "The fuzz sentinel lives in Lisbon."]


def examples(config: pytest.Config, base: int) -> int:
    """``base`` cases, or ten times as many when the run selects the fuzz marker (``-m fuzz``)."""
    markexpr = config.getoption("markexpr", "") or ""
    return base * 10 if "fuzz" in markexpr else base


# ------------------------------------------------------------------------------------ strategies
JUNK: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)


def from_schema(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that follow ``schema`` (the subset tool schemas use), kept small."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, defs, depth) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        lo = int(schema.get("minLength", 0))
        hi = min(int(schema.get("maxLength", 120)), max(lo, 120))
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: lo <= len(s) <= hi
            ) | st.text(max_size=hi)
        return st.text(st.characters(exclude_categories=("Cs",)), min_size=lo, max_size=hi)
    if kind == "integer":
        return st.integers(
            min_value=schema.get("minimum", schema.get("exclusiveMinimum", -(2**31))),
            max_value=min(schema.get("maximum", 2**31), 10_000),
        )
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items", {})
        lo = int(schema.get("minItems", 0))
        return st.lists(
            from_schema(items, defs, depth + 1) if depth < 3 else JUNK,
            min_size=lo,
            max_size=max(lo, min(int(schema.get("maxItems", 4)), 4)),
        )
    if kind == "object" or "properties" in schema:
        return arguments(schema, defs, depth + 1) if depth < 3 else st.just({})
    return JUNK


def arguments(
    schema: dict[str, Any], defs: dict[str, Any], depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    """An object of ``schema``: the required properties and any subset of the optional ones."""
    props: dict[str, Any] = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in props]
    optional = [name for name in props if name not in required]
    fixed = st.fixed_dictionaries(
        {name: from_schema(props[name], defs, depth) for name in required},
        optional={name: from_schema(props[name], defs, depth) for name in optional},
    )
    if schema.get("additionalProperties", True) is not False and "properties" not in schema:
        return st.dictionaries(st.text(max_size=8), JUNK, max_size=3)
    return fixed


@st.composite
def tool_call(draw: st.DrawFn, tool: str, schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Arguments for ``tool``, and the unknown argument added on purpose, if one was."""
    defs = schema.get("$defs", {})
    args = dict(draw(arguments(schema, defs)))
    props = list(schema.get("properties", {}))
    unknown = None
    how = draw(st.sampled_from(["as_drawn"] * 7 + ["wrong_value", "unknown", "drop"]))
    if how == "wrong_value" and props:
        args[draw(st.sampled_from(props))] = draw(JUNK)
    elif how == "unknown":
        unknown = draw(st.sampled_from(["zz_unknown", "limt", "extra_arg"]))
        args[unknown] = draw(JUNK)
    elif how == "drop" and args:
        args.pop(draw(st.sampled_from(sorted(args))))
    if tool in MODEL_TOOLS:
        for name, cap in BUDGET_CAPS.items():
            if name in props and (not isinstance(args.get(name), int) or args[name] > cap):
                args[name] = cap
    return args, unknown


# ------------------------------------------------------------------------------------ the session
class Session:
    """One client session to one server for the whole module, driven from sync hypothesis tests."""

    def __init__(self, portal: BlockingPortal, client: Client, settings: Settings) -> None:
        self.portal = portal
        self.client = client
        self.settings = settings
        self.schemas: dict[str, dict[str, Any]] = {}
        self.before: tuple[int, str, int] = (0, "", 0)
        self.calls: dict[str, list[int]] = {}  # tool -> [calls, errors]

    def call(self, tool: str, args: dict[str, Any]) -> Any:
        async def go() -> Any:
            with anyio.fail_after(CALL_TIMEOUT_S):
                return await self.client.call_tool(tool, args)

        return self.portal.call(go)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Session]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    cfg = load_settings(data_dir=data_dir, redis_url=redis_url, namespace=f"fz{uuid.uuid4().hex[:10]}")
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(create_server(cfg))) as client,
    ):
        s = Session(portal, client, cfg)
        tools = portal.call(client.list_tools).tools
        s.schemas = {t.name: t.input_schema for t in tools}
        for doc_id, text in SENTINEL_DOCS.items():
            assert not s.call("ingest_document", {"id": doc_id, "text": text}).is_error
        for text in SENTINEL_MEMORIES:
            stored = s.call(
                "store_memory", {"content": text, "tier": "long_term", "agent_id": SENTINEL_AGENT}
            )
            assert not stored.is_error
        s.before = fingerprint(s)
        assert s.before[0] == len(SENTINEL_DOCS)
        assert s.before[2] == len(SENTINEL_MEMORIES)
        yield s


def fingerprint(s: Session) -> tuple[int, str, int]:
    """Sentinel documents found and their checksum, and the sentinel agent's memory count."""
    digest = hashlib.sha256()
    found = 0
    for doc_id in sorted(SENTINEL_DOCS):
        result = s.call("get_document", {"id": doc_id})
        if not result.is_error:
            found += 1
            doc = result.structured_content
            digest.update(json.dumps([doc_id, doc["text"], doc["chunks"], doc["content_hash"]]).encode())
    stats = s.call("get_memory_stats", {"agent_id": SENTINEL_AGENT}).structured_content
    return found, digest.hexdigest(), sum(int(tier["count"]) for tier in stats["tiers"])


def check_answer(tool: str, args: dict[str, Any], result: Any) -> None:
    """A result, or an error that gives a reason: never a traceback or an empty message."""
    text = " ".join(getattr(c, "text", "") for c in result.content)
    where = f"{tool}({json.dumps(args, default=str)[:300]})"
    assert "Traceback (most recent call last)" not in text, where
    if result.is_error:
        reason = text.split(":", 1)[1].strip() if text.startswith("Error executing tool") else text.strip()
        assert len(reason) >= 10, f"{where}: error without a reason: {text!r}"


TOOLS = [
    "health_check",
    "get_system_metrics",
    "store_memory",
    "recall_memory",
    "clear_memory",
    "get_memory_stats",
    "consolidate_memory",
    "ingest_document",
    "batch_ingest",
    "search_documents",
    "semantic_search",
    "hybrid_search",
    "research_query",
    "list_documents",
    "get_document",
    "delete_document",
    "sync_folder",
    "reason",
    "agent_calculator",
    "agent_get_datetime",
    "agent_system_info",
    "run_agent",
]


def test_every_tool_is_fuzzed(session: Session) -> None:
    assert sorted(session.schemas) == sorted(TOOLS)


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_answers_any_arguments(session: Session, tool: str, request: pytest.FixtureRequest) -> None:
    schema = session.schemas[tool]
    runs = examples(request.config, 4 if tool in MODEL_TOOLS else 60)

    @settings(
        max_examples=runs,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(call=tool_call(tool, schema))
    def run(call: tuple[dict[str, Any], str | None]) -> None:
        args, unknown = call
        result = session.call(tool, args)
        check_answer(tool, args, result)
        tally = session.calls.setdefault(tool, [0, 0])
        tally[0] += 1
        tally[1] += bool(result.is_error)
        if unknown is not None:  # refused, naming the argument, before anything runs
            assert result.is_error
            assert unknown in result.content[0].text

    run()


def test_store_is_healthy_and_intact_after_the_fuzzing(
    session: Session, request: pytest.FixtureRequest
) -> None:
    calls = sum(n for n, _ in session.calls.values())
    errors = sum(e for _, e in session.calls.values())
    print(f"fuzz: {calls} calls, {errors} errors: {session.calls}")
    if len(session.calls) == len(TOOLS):  # the whole module ran
        assert calls >= examples(request.config, 1000)
        # Both sides were reached: valid calls that answered, broken ones that were refused.
        assert 0 < errors < calls
    health = session.call("health_check", {})
    assert not health.is_error
    assert health.structured_content["status"] == "ok"
    assert health.structured_content["redis"]["ok"] is True
    assert fingerprint(session) == session.before
