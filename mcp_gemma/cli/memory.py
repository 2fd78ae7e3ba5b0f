"""``mcp-gemma memory store|recall|stats|clear|consolidate``: the memory tools from the shell.

Each command opens the same :class:`~mcp_gemma.state.AppState` the server uses, calls the memory
service and prints its result as JSON (``recall`` and ``stats`` print for a person unless --json).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from mcp_gemma.cli.common import run_with_state, settings_from_cli

memory_app = typer.Typer(help="Store, recall and manage the agent memory.", no_args_is_help=True)

T = TypeVar("T", bound=BaseModel)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded Redis, caches).")
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="External Redis URL (default: embedded).")]
AgentOpt = Annotated[str, typer.Option("--agent", "-a", help="Agent id (namespace of the memories).")]
TierOpt = Annotated[
    str | None, typer.Option("--tier", "-t", help="working, short_term, long_term, episodic, semantic.")
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _run(
    config: Path | None,
    data_dir: Path | None,
    redis_url: str | None,
    call: Callable[[Any], Awaitable[T]],
    human: Callable[[T], None] | None = None,
) -> None:
    """Open the app state, run ``call(state)``, close; print the result for a person (``human``) or
    as JSON (commands that change something, and read commands given --json)."""
    settings = settings_from_cli(config, data_dir=data_dir, redis_url=redis_url)
    result = run_with_state(settings, call)
    if human is not None:
        human(result)
    else:
        typer.echo(result.model_dump_json(indent=2))


def _print_recall(result: Any) -> None:
    if not result.hits:
        typer.echo("nothing recalled")
    for rank, hit in enumerate(result.hits, start=1):
        item = hit.item
        typer.echo(f"{rank}. [{item.tier}] {item.content}")
        typer.echo(f"   {item.id}  score {hit.score:.3f}  tags {', '.join(item.tags) or '-'}")


def _print_stats(report: Any) -> None:
    typer.echo(f"agent {report.agent_id}: {report.total_count} memories, {report.total_bytes} bytes")
    for t in report.tiers:
        ttl = "none" if t.ttl_s is None else f"{t.ttl_s:g} s"
        typer.echo(
            f"  {t.tier:<10} {t.count:>6} / {t.capacity:<6} ttl {ttl:<10} hits {t.hits} misses {t.misses} "
            f"evicted {t.evicted} expired {t.expired} promoted {t.promoted}"
        )


@memory_app.command("store")
def store(
    content: Annotated[list[str], typer.Argument(help="Text(s) to remember.")],
    tier: Annotated[str, typer.Option("--tier", "-t", help="Tier to store in.")] = "short_term",
    importance: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 (trivial) to 1 (critical).")] = 0.5,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    session: Annotated[str | None, typer.Option(help="Session id.")] = None,
    shared: Annotated[bool, typer.Option(help="Visible to every agent.")] = False,
    agent: AgentOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Store one or more memories."""
    _run(
        config,
        data_dir,
        redis_url,
        lambda s: s.memory.store(
            content,
            tier=tier,
            importance=importance,
            tags=tag or [],
            agent_id=agent,
            session_id=session,
            shared=shared,
        ),
    )


@memory_app.command("recall")
def recall(
    query: Annotated[str, typer.Argument(help="What to remember.")],
    limit: Annotated[int, typer.Option("--limit", "-k", min=1, max=100, help="Most results.")] = 5,
    tier: Annotated[
        list[str] | None, typer.Option("--tier", "-t", help="Tier to search (repeatable).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Required tag (repeatable).")] = None,
    session: Annotated[str | None, typer.Option(help="Only this session.")] = None,
    agent: AgentOpt = "default",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Recall memories by meaning."""
    _run(
        config,
        data_dir,
        redis_url,
        lambda s: s.memory.recall(
            query,
            k=limit,
            tiers=tier or None,
            tags=tag or [],
            session_id=session,
            agent_id=agent,
        ),
        None if as_json else _print_recall,
    )


@memory_app.command("stats")
def stats(
    agent: AgentOpt = "default",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Per-tier counts, bytes, ages, expiries and hit rates."""
    _run(
        config,
        data_dir,
        redis_url,
        lambda s: s.memory.stats(agent),
        None if as_json else _print_stats,
    )


@memory_app.command("clear")
def clear(
    tier: TierOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: clearing cannot be undone.")] = False,
    agent: AgentOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Delete one tier (or every tier) of an agent; needs --yes."""
    _run(config, data_dir, redis_url, lambda s: s.memory.clear(tier, agent_id=agent, confirm=yes))


@memory_app.command("consolidate")
def consolidate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change, change nothing.")
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(min=0.5, max=1.0, help="Merge at or above this cosine.")
    ] = None,
    session: Annotated[str | None, typer.Option(help="Only summarise this session.")] = None,
    agent: AgentOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Promote, merge near-duplicates and summarise episodes."""
    from mcp_gemma.memory.consolidation import consolidate as run_consolidation
    from mcp_gemma.store.redis import redis_guard

    _run(
        config,
        data_dir,
        redis_url,
        lambda s: redis_guard(run_consolidation)(
            s.memory, agent_id=agent, threshold=threshold, session_id=session, dry_run=dry_run
        ),
    )
