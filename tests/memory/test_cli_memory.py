"""``mcp-gemma memory …``: the same service from the shell, JSON out, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mcp_gemma import cli

runner = CliRunner()


def test_memory_commands_store_recall_stats_consolidate_clear(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    config = tmp_path / "ns.toml"
    config.write_text(f'namespace = "{namespace}"\n', encoding="utf-8")
    common = ["--redis-url", redis_url, "--config", str(config), "--data-dir", str(tmp_path / "data")]

    def invoke(*args: str) -> dict[str, object]:
        result = runner.invoke(cli.app, ["memory", *args, *common])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    stored = invoke("store", "The build server is called hopper", "--tier", "long_term", "--tag", "infra")
    assert stored["tier"] == "long_term" and len(stored["ids"]) == 1  # type: ignore[arg-type]
    recalled = invoke("recall", "what is the build server's name?", "-k", "1", "--json")
    assert recalled["hits"][0]["item"]["content"] == "The build server is called hopper"  # type: ignore[index]
    stats = invoke("stats", "--json")
    assert stats["total_count"] == 1
    human = runner.invoke(cli.app, ["memory", "recall", "build server", "-k", "1", *common])
    assert human.exit_code == 0, human.output
    assert human.stdout.startswith("1. [long_term] The build server is called hopper\n")
    table = runner.invoke(cli.app, ["memory", "stats", *common])
    assert table.stdout.startswith("agent default: 1 memories")
    report = invoke("consolidate", "--dry-run")
    assert report["dry_run"] is True and report["removed"] == 0

    refused = runner.invoke(cli.app, ["memory", "clear", *common])
    assert refused.exit_code == 1
    assert "confirm" in refused.stderr and "deletes memories for good" in refused.stderr
    assert invoke("stats", "--json")["total_count"] == 1
    cleared = invoke("clear", "--yes")
    assert cleared["removed"]["long_term"] == 1  # type: ignore[index]
