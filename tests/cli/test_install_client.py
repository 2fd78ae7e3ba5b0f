"""``install-client`` / ``uninstall-client`` on a temporary HOME, for every client and OS layout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mcp_gemma import cli
from mcp_gemma.client_config import (
    CLIENTS,
    Client,
    Scope,
    Where,
    config_path,
    find_entries,
    launch_command,
)

runner = CliRunner()
HOME_FILES: dict[Client, str] = {
    "claude-desktop": ".config/Claude/claude_desktop_config.json",
    "claude-code": ".claude.json",
    "vscode": ".config/Code/User/mcp.json",
    "cursor": ".cursor/mcp.json",
}


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("MCP_GEMMA_") or key in {"REDIS_URL", "HF_TOKEN", "XDG_CONFIG_HOME", "APPDATA"}:
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return home


def _servers(path: Path, client: Client) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    servers: dict[str, Any] = data["servers" if client == "vscode" else "mcpServers"]
    return servers


@pytest.mark.skipif(sys.platform != "linux", reason="HOME_FILES spells the Linux layout")
@pytest.mark.parametrize("client", CLIENTS)
def test_install_merges_keeps_a_backup_and_uninstall_removes_only_its_entry(
    client: Client, home: Path
) -> None:
    path = home / HOME_FILES[client]
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "servers" if client == "vscode" else "mcpServers"
    original = {"theme": "dark", key: {"other": {"command": "other-server", "args": []}}}
    path.write_text(json.dumps(original), encoding="utf-8")

    result = runner.invoke(
        cli.app, ["install-client", client, "--data-dir", str(home / "data"), "--env", "HF_HUB_OFFLINE=1"]
    )
    assert result.exit_code == 0, result.output
    assert f"+++ {path} (new)" in result.output
    assert f"wrote {path}" in result.output
    servers = _servers(path, client)
    assert servers["other"] == {"command": "other-server", "args": []}
    entry = servers["mcp-gemma"]
    command, args = launch_command()
    assert entry["command"] == command and Path(command).is_absolute()
    assert entry["args"] == args and args[-3:] == ["serve", "--transport", "stdio"]
    assert entry["env"] == {"HF_HUB_OFFLINE": "1", "MCP_GEMMA_DATA_DIR": str((home / "data").resolve())}
    assert json.loads(path.read_text(encoding="utf-8"))["theme"] == "dark"
    assert json.loads((path.parent / (path.name + ".mcp-gemma.bak")).read_text(encoding="utf-8")) == original

    found = [e for e in find_entries() if e.client == client]
    assert [(e.path, e.points_here, e.command_exists) for e in found] == [(path, True, True)]

    again = runner.invoke(
        cli.app, ["install-client", client, "--data-dir", str(home / "data"), "--env", "HF_HUB_OFFLINE=1"]
    )
    assert again.exit_code == 0 and "nothing to change" in again.output

    removed = runner.invoke(cli.app, ["uninstall-client", client])
    assert removed.exit_code == 0, removed.output
    assert json.loads(path.read_text(encoding="utf-8")) == original


@pytest.mark.parametrize("client", ["claude-code", "vscode", "cursor"])
def test_project_scope_and_dry_run(client: Client, home: Path) -> None:
    path = config_path(client, "project", Where.here())
    assert path.is_relative_to(Path.cwd())
    dry = runner.invoke(cli.app, ["install-client", client, "--scope", "project", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert '"mcp-gemma"' in dry.output and "(dry run:" in dry.output
    assert not path.exists()
    done = runner.invoke(cli.app, ["install-client", client, "--scope", "project"])
    assert done.exit_code == 0, done.output
    assert "mcp-gemma" in _servers(path, client)
    assert not (home / HOME_FILES[client]).exists()


def test_invalid_json_is_refused_and_left_alone(home: Path) -> None:
    path = home / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{"mcpServers": {}, // a comment\n}', encoding="utf-8")
    result = runner.invoke(cli.app, ["install-client", "cursor"])
    assert result.exit_code == 1
    assert "is not valid JSON (line 1" in result.output
    assert "nothing was changed" in result.output
    assert path.read_text(encoding="utf-8") == '{"mcpServers": {}, // a comment\n}'
    assert not (path.parent / "mcp.json.mcp-gemma.bak").exists()


def test_claude_desktop_has_no_project_scope(home: Path) -> None:
    result = runner.invoke(cli.app, ["install-client", "claude-desktop", "--scope", "project"])
    assert result.exit_code == 1
    assert "Claude Desktop has no project config" in result.output


def test_bad_env_pair_is_a_usage_error(home: Path) -> None:
    result = runner.invoke(cli.app, ["install-client", "cursor", "--env", "NOEQUALS"])
    assert result.exit_code == 2
    assert "--env takes KEY=VALUE" in result.output


@pytest.mark.parametrize(
    ("system", "client", "scope", "expected"),
    [
        (
            "Darwin",
            "claude-desktop",
            "user",
            "H/Library/Application Support/Claude/claude_desktop_config.json",
        ),
        ("Windows", "claude-desktop", "user", "A/Claude/claude_desktop_config.json"),
        ("Linux", "claude-desktop", "user", "X/Claude/claude_desktop_config.json"),
        ("Darwin", "vscode", "user", "H/Library/Application Support/Code/User/mcp.json"),
        ("Windows", "vscode", "user", "A/Code/User/mcp.json"),
        ("Linux", "vscode", "project", "P/.vscode/mcp.json"),
        ("Windows", "claude-code", "user", "H/.claude.json"),
        ("Linux", "claude-code", "project", "P/.mcp.json"),
        ("Darwin", "cursor", "user", "H/.cursor/mcp.json"),
        ("Windows", "cursor", "project", "P/.cursor/mcp.json"),
    ],
)
def test_config_paths_per_os(system: str, client: Client, scope: Scope, expected: str) -> None:
    where = Where(home=Path("H"), cwd=Path("P"), system=system, appdata=Path("A"), xdg_config=Path("X"))
    assert config_path(client, scope, where) == Path(expected)
