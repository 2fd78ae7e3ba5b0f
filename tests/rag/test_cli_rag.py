"""``mcp-gemma ingest`` and ``mcp-gemma search`` through Typer's runner, on the real Redis and MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mcp_gemma.cli import app
from mcp_gemma.settings import Settings


def cli_args(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The options and environment that point the CLI at the test's Redis and namespace."""
    assert settings.redis_url is not None
    common = ["--data-dir", str(settings.data_dir), "--redis-url", settings.redis_url.get_secret_value()]
    return common, {"MCP_GEMMA_NAMESPACE": settings.namespace}


def test_ingest_then_search(settings: Settings, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "tides.md").write_text("Tides are caused by the gravitational pull of the moon.", encoding="utf-8")
    (kb / "ice.txt").write_text("Glaciers are slow rivers of ice.", encoding="utf-8")
    (kb / "bad.txt").write_bytes(b"\xff\xfe")
    common, env = cli_args(settings)
    runner = CliRunner()

    done = runner.invoke(app, ["ingest", str(kb), *common], env=env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert sorted(r["id"] for r in report["ingested"]) == ["file:ice.txt", "file:tides.md"]
    assert [Path(f["source"]).name for f in report["failed"]] == ["bad.txt"]

    found = runner.invoke(
        app, ["search", "what moves the sea", "--mode", "vector", "--json", *common], env=env
    )
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["hits"][0]["doc_id"] == "file:tides.md"
    text = runner.invoke(app, ["search", "glaciers", "-n", "1", *common], env=env)
    assert text.exit_code == 0 and "file:ice.txt" in text.stdout

    bad = runner.invoke(app, ["search", "x", "--mode", "fuzzy", *common], env=env)
    assert bad.exit_code == 2 and "unknown mode" in bad.output


def test_list_and_get_for_people_and_scripts(settings: Settings, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ice.txt").write_text("Glaciers are slow rivers of ice.", encoding="utf-8")
    common, env = cli_args(settings)
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(kb), *common], env=env).exit_code == 0

    listed = runner.invoke(app, ["list", "--json", *common], env=env)
    assert listed.exit_code == 0, listed.output
    page = json.loads(listed.stdout)
    assert (page["total"], [d["id"] for d in page["documents"]]) == (1, ["file:ice.txt"])
    human = runner.invoke(app, ["list", *common], env=env)
    assert human.stdout == 'file:ice.txt  32 chars, 1 chunks  {"format": "txt", "source": "ice.txt"}\n'
    assert human.stderr == "1 of 1 documents\n"
    filtered = runner.invoke(app, ["list", "--filter", '{"format": "md"}', "--json", *common], env=env)
    assert json.loads(filtered.stdout)["total"] == 0

    got = runner.invoke(app, ["get", "file:ice.txt", *common], env=env)
    assert got.exit_code == 0 and got.stdout == "Glaciers are slow rivers of ice.\n"
    record = json.loads(
        runner.invoke(app, ["get", "file:ice.txt", "--chunks", "--json", *common], env=env).stdout
    )
    assert [(c["start"], c["end"]) for c in record["chunk_list"]] == [(0, 32)]

    missing = runner.invoke(app, ["get", "nope", *common], env=env)
    assert missing.exit_code == 1 and "no document with id 'nope'" in missing.stderr
    bad = runner.invoke(app, ["list", "--filter", "{oops", *common], env=env)
    assert bad.exit_code == 2 and "--filter is not JSON" in bad.stderr


def test_collection_option_uses_a_separate_knowledge_base(settings: Settings, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ice.txt").write_text("Glaciers are slow rivers of ice.", encoding="utf-8")
    common, env = cli_args(settings)
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", str(kb), "--collection", "team-a", *common], env=env)
    assert done.exit_code == 0, done.output

    team = json.loads(
        runner.invoke(app, ["list", "--json", "--collection", "team-a", *common], env=env).stdout
    )
    assert [d["id"] for d in team["documents"]] == ["file:ice.txt"]
    default = json.loads(runner.invoke(app, ["list", "--json", *common], env=env).stdout)
    assert default["total"] == 0
    got = runner.invoke(app, ["get", "file:ice.txt", "--collection", "team-a", *common], env=env)
    assert got.exit_code == 0 and got.stdout == "Glaciers are slow rivers of ice.\n"
    found = runner.invoke(app, ["search", "glaciers", "--json", "--collection", "team-a", *common], env=env)
    assert [h["doc_id"] for h in json.loads(found.stdout)["hits"]] == ["file:ice.txt"]
    bad = runner.invoke(app, ["list", "--collection", "a/b", *common], env=env)
    assert bad.exit_code == 1
    assert "collection 'a/b' is not a valid name: use 1 to 64 letters, digits, '_', '.' or '-'" in bad.stderr
