"""``mcp-gemma health [--json]``: the health_check report from the shell, on the real Redis."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mcp_gemma import __version__
from mcp_gemma.cli import app
from mcp_gemma.settings import Settings


def test_health_for_people_and_scripts(settings: Settings) -> None:
    assert settings.redis_url is not None
    common = ["--data-dir", str(settings.data_dir), "--redis-url", settings.redis_url.get_secret_value()]
    env = {"MCP_GEMMA_NAMESPACE": settings.namespace}
    runner = CliRunner()
    done = runner.invoke(app, ["health", "--json", "--metrics", *common], env=env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["status"], report["server"], report["version"]) == ("ok", "mcp-gemma", __version__)
    assert report["redis"]["ok"] is True and report["redis"]["kind"] == "external"
    assert {"knowledge base", "memory"} <= {c["name"] for c in report["components"]}
    assert report["metrics"]["threads"] >= 1

    human = runner.invoke(app, ["health", *common], env=env)
    assert human.exit_code == 0, human.output
    lines = human.stdout.splitlines()
    assert lines[0] == f"status: ok (mcp-gemma {__version__})"
    redis = report["redis"]
    assert lines[1].startswith(f"redis: external {redis['where']}, {redis['version']}, ")
    assert lines[-1].startswith("versions: mcp_gemma ")


def test_health_without_redis_exits_1(settings: Settings) -> None:
    result = CliRunner().invoke(
        app, ["health", "--data-dir", str(settings.data_dir), "--redis-url", "redis://127.0.0.1:1/0"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("mcp-gemma: error: ")
