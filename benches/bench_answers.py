"""Answer quality of ``run_agent`` and ``research_query`` on tasks a program can check.

Usage: ``python benches/bench_answers.py [--quick] [--brain local|scripted|both] [--only ID ...]``.

The tasks (``benches/data/answers_tasks.json``, 42 of them) are arithmetic, dates, a fact from an
ingested document, a fact from memory, a file under an allowed root, and two-step tasks that need
two tools. Everything runs through a real MCP client session against ``create_server``: the documents
are ingested with ``ingest_document``, the memories stored with ``store_memory``, the files written
under the allowed root, and each task is one ``run_agent`` call with the default (safe) tools.

Two brains: the local Gemma (actions decoded under the tools' grammar) and a scripted client brain
that answers MCP sampling requests with the task's scripted calls and, as its final answer, the
last observation (it shows the harness, the tools and the checks are right). Reported per brain:
success (single-tool and two-step), tool-call validity (steps whose action named an offered tool
with schema-valid arguments, or answered), steps and seconds per task. For the local brain also
``research_query`` on the document questions: how often it cites a chunk that holds the fact.

Success counts are deterministic (greedy decoding); ``--quick`` runs a fixed subset, not other tasks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import _common  # noqa: E402, F401 - clears OPENBLAS_* before numpy loads

TASKS = HERE / "data" / "answers_tasks.json"
QUICK = ["arith-01", "date-02", "doc-02", "mem-01", "two-01"]
MAX_STEPS = 5
_NUMBER = re.compile(r"(?<!\d)-?\d+(?:\.\d+)?")


def load_tasks(only: Iterable[str] | None = None) -> dict[str, Any]:
    """The task file, keeping only the tasks named in ``only`` (all when None)."""
    data: dict[str, Any] = json.loads(TASKS.read_text(encoding="utf-8"))
    if only is not None:
        wanted = list(only)
        data["tasks"] = [t for t in data["tasks"] if t["id"] in wanted]
    return data


def clock(now: datetime | None = None) -> dict[str, str]:
    """The values date tasks are checked against, from the same clock the date tool reads."""
    now = now or datetime.now(UTC)
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    return {
        "year": str(now.year),
        "month": str(now.month),
        "day": str(now.day),
        "date": now.date().isoformat(),
        "weekday": now.strftime("%A"),
        "tokyo_year": str(tokyo.year),
    }


def expected_number(expression: str, values: dict[str, str]) -> float:
    """An ``expect.number`` expression, filled in and evaluated by the agent's calculator."""
    from mcp_gemma.agent.calculator import calculate

    return float(calculate(expression.format(**values)).result)


def check(answer: str | None, expect: dict[str, Any], values: dict[str, str]) -> bool:
    """Whether ``answer`` holds the expected number (commas ignored) or every expected text."""
    if not answer:
        return False
    if "number" in expect:
        want = expected_number(expect["number"], values)
        found = [float(n) for n in _NUMBER.findall(answer.replace(",", ""))]
        return any(abs(n - want) < 1e-9 for n in found)
    return all(t.format(**values).lower() in answer.lower() for t in expect["text"])


def fill(args: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    return {k: v.format(**values) if isinstance(v, str) else v for k, v in args.items()}


class ScriptedClientModel:
    """The client's model for MCP sampling: the current task's calls in order, then the last observation."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def start(self, script: list[list[Any]]) -> None:
        self.calls = [(tool, fill(args, self.values)) for tool, args in script]

    async def __call__(self, context: Any, params: Any) -> Any:
        import mcp_types as types

        if self.calls:
            tool, args = self.calls.pop(0)
            text = json.dumps({"thought": f"call {tool}", "tool": tool, "args": args})
        else:
            last = params.messages[-1].content.text
            observation = last.removeprefix("Observation: ").split("\nReflect on")[0]
            text = json.dumps({"thought": "the observation answers it", "answer": observation})
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=text), model="scripted-client"
        )


@dataclass
class Outcome:
    """One task's run."""

    id: str
    kind: str
    success: bool
    answer: str | None
    stop_reason: str
    steps: int
    valid_steps: int
    seconds: float
    trace: list[str] = field(default_factory=list)


async def prepare(client: Any, data: dict[str, Any], root: Path) -> None:
    """Ingest the documents, store the memories and write the files the tasks ask about."""
    for doc_id, text in data["documents"].items():
        result = await client.call_tool("ingest_document", {"text": text, "id": doc_id})
        assert not result.is_error, result.content
    result = await client.call_tool("store_memory", {"content": data["memories"], "tier": "semantic"})
    assert not result.is_error, result.content
    for rel, text in data["files"].items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


async def run_task(client: Any, task: dict[str, Any], brain: str, values: dict[str, str]) -> Outcome:
    """One ``run_agent`` call, checked."""
    started = time.perf_counter()
    result = await client.call_tool(
        "run_agent", {"task": task["task"], "brain": brain, "max_steps": MAX_STEPS}
    )
    seconds = time.perf_counter() - started
    if result.is_error:
        return Outcome(
            task["id"], task["kind"], False, None, "error", 0, 0, seconds, [result.content[0].text]
        )
    report = result.structured_content
    steps = report["steps"]
    valid = sum(1 for s in steps if s["status"] in ("ok", "error", "repeated", "answer"))
    trace = [f"{s['status']}: {s['raw_output'][:160]}" for s in steps]
    return Outcome(
        task["id"],
        task["kind"],
        check(report["answer"], task["expect"], values),
        report["answer"],
        report["stop_reason"],
        len(steps),
        valid,
        round(seconds, 2),
        trace,
    )


async def research_citations(
    client: Any, tasks: list[dict[str, Any]], values: dict[str, str]
) -> dict[str, Any]:
    """``research_query`` on the document questions: does a cited chunk hold the expected fact?"""
    supported = generated = 0
    rows = []
    for task in tasks:
        result = await client.call_tool("research_query", {"query": task["task"], "use_memory": False})
        report = result.structured_content if not result.is_error else {}
        texts = {e["ref"]: e["text"] for e in report.get("evidence", [])}
        cited = report.get("cited", [])
        ok = any(check(texts.get(ref, ""), task["expect"], values) for ref in cited)
        supported += ok
        generated += report.get("answer_kind") == "generated"
        rows.append({"id": task["id"], "cited": cited, "supported": ok, "kind": report.get("answer_kind")})
    n = len(tasks)
    return {
        "questions": n,
        "cites_supporting_chunk": supported,
        "rate": round(supported / n, 3) if n else None,
        "generated": generated,
        "rows": rows,
    }


async def run_brain(
    client: Any, brain: str, tasks: list[dict[str, Any]], values: dict[str, str], model: ScriptedClientModel
) -> dict[str, Any]:
    """Every task with ``brain`` ("local", or "scripted": ``model`` answers the sampling requests);
    for the local brain also ``research_query`` on the document questions."""
    outcomes = []
    for task in tasks:
        model.start(task["script"])
        outcome = await run_task(client, task, "local" if brain == "local" else "client", values)
        outcomes.append(outcome)
        mark = "ok " if outcome.success else "MISS"
        line = f"   {brain:8} {mark} {task['id']:8} {outcome.seconds:6.1f} s  {outcome.answer!r}"
        print(line[:160])
    summary = summarise(outcomes)
    if brain == "local":
        docs = [t for t in tasks if t["kind"] == "document"]
        summary["research_query"] = await research_citations(client, docs, values)
    return summary


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """Success (single-tool, two-step), validity, steps and seconds per task."""

    def share(items: list[Outcome]) -> dict[str, Any]:
        won = sum(o.success for o in items)
        return {"success": won, "tasks": len(items), "rate": round(won / len(items), 3) if items else None}

    single = [o for o in outcomes if o.kind != "two_step"]
    two = [o for o in outcomes if o.kind == "two_step"]
    steps = sum(o.steps for o in outcomes)
    return {
        "all": share(outcomes),
        "single_tool": share(single),
        "two_step": share(two),
        "by_kind": {
            k: share([o for o in outcomes if o.kind == k]) for k in dict.fromkeys(o.kind for o in outcomes)
        },
        "tool_call_validity": round(sum(o.valid_steps for o in outcomes) / steps, 3) if steps else None,
        "steps_per_task": round(steps / len(outcomes), 2) if outcomes else None,
        "seconds_per_task": round(sum(o.seconds for o in outcomes) / len(outcomes), 2) if outcomes else None,
        "failures": [
            {"id": o.id, "answer": o.answer, "stop": o.stop_reason, "trace": o.trace}
            for o in outcomes
            if not o.success
        ],
    }


async def evaluate(
    brains: list[str], only: list[str] | None, workdir: Path, models_dir: Path | None = None
) -> dict[str, Any]:
    """Run the tasks with each brain in one MCP session per brain; the summary per brain."""
    from mcp import Client

    from mcp_gemma.server.app import create_server
    from mcp_gemma.settings import load_settings
    from mcp_gemma.store.embedded import EmbeddedRedis

    data = load_tasks(only)
    values = clock()
    out: dict[str, Any] = {"tasks": len(data["tasks"]), "clock": values}
    redis = EmbeddedRedis(workdir / "redis")
    redis.start()
    try:
        for brain in brains:
            root = workdir / f"root-{brain}"
            root.mkdir(parents=True, exist_ok=True)
            gemma: dict[str, Any] = {"cache_dir": str(models_dir)} if models_dir else {}
            settings = load_settings(
                data_dir=workdir / f"data-{brain}",
                redis_url=redis.url,
                namespace=f"answers-{brain}",
                allowed_roots=[root],
                gemma=gemma,
            )
            model = ScriptedClientModel(values)
            async with Client(create_server(settings), sampling_callback=model) as client:
                await prepare(client, data, root)
                summary = await run_brain(client, brain, data["tasks"], values, model)
            out[brain] = summary
            print_summary(brain, summary)
    finally:
        redis.release()
    return out


def print_summary(brain: str, s: dict[str, Any]) -> None:
    one, two = s["single_tool"], s["two_step"]
    print(
        f"   {brain}: single-tool {one['success']}/{one['tasks']}, two-step {two['success']}/{two['tasks']}, "
        f"validity {s['tool_call_validity']}, {s['steps_per_task']} steps and "
        f"{s['seconds_per_task']} s per task"
    )
    if "research_query" in s:
        r = s["research_query"]
        print(f"   research_query cites a supporting chunk: {r['cites_supporting_chunk']}/{r['questions']}")


def run(
    quick: bool = False, brains: list[str] | None = None, only: list[str] | None = None
) -> dict[str, Any]:
    """The bench's entry point for ``run_all.py``."""
    import logging

    import anyio

    logging.getLogger("mcp_gemma").setLevel(logging.WARNING)
    models = Path(tempfile.gettempdir()) / "mcp-gemma-bench-models"
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
        return anyio.run(
            evaluate, brains or ["scripted", "local"], only or (QUICK if quick else None), Path(tmp), models
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fixed subset of 5 tasks")
    parser.add_argument("--brain", choices=["local", "scripted", "both"], default="both")
    parser.add_argument("--only", nargs="*", default=None, help="task ids")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    brains = ["scripted", "local"] if args.brain == "both" else [args.brain]
    result = run(args.quick, brains, args.only)
    for brain in brains:
        for failure in result[brain]["failures"]:
            print(
                f"   {brain} missed {failure['id']}: {failure['answer']!r}", *failure["trace"], sep="\n      "
            )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
