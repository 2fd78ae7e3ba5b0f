"""The MCP client config files (Claude Desktop, Claude Code, VS Code, Cursor): where each one is, and
adding or removing this install's entry without touching anything else in them.

Pure functions over paths, so the CLI (``install-client``, ``uninstall-client``, ``doctor``) and a
future REST API share them, and tests run them on a temporary HOME.
"""

from __future__ import annotations

import difflib
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from mcp_gemma.errors import InvalidInputError

Client = Literal["claude-desktop", "claude-code", "vscode", "cursor"]
Scope = Literal["user", "project"]
CLIENTS: tuple[Client, ...] = ("claude-desktop", "claude-code", "vscode", "cursor")
ENTRY_NAME = "mcp-gemma"
BACKUP_SUFFIX = ".mcp-gemma.bak"


class Where(BaseModel):
    """The machine facts a config path depends on (:meth:`here` reads this process's)."""

    home: Path
    cwd: Path
    system: str  # platform.system(): Linux, Darwin, Windows
    appdata: Path | None = None  # %APPDATA% on Windows
    xdg_config: Path | None = None  # $XDG_CONFIG_HOME on Linux

    @classmethod
    def here(cls) -> Where:
        """Where this process runs."""
        env = os.environ
        return cls(
            home=Path.home(),
            cwd=Path.cwd(),
            system=platform.system(),
            appdata=Path(env["APPDATA"]) if env.get("APPDATA") else None,
            xdg_config=Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None,
        )


def _app_config_dir(where: Where) -> Path:
    """The per-user settings folder: ``~/.config``, ``~/Library/Application Support``, ``%APPDATA%``."""
    if where.system == "Darwin":
        return where.home / "Library" / "Application Support"
    if where.system == "Windows":
        return where.appdata or where.home / "AppData" / "Roaming"
    return where.xdg_config or where.home / ".config"


def config_path(client: Client, scope: Scope, where: Where) -> Path:
    """The config file of ``client`` at ``scope``; Claude Desktop has only a user scope."""
    if client == "claude-desktop":
        if scope == "project":
            raise InvalidInputError("Claude Desktop has no project config; use --scope user")
        return _app_config_dir(where) / "Claude" / "claude_desktop_config.json"
    if client == "claude-code":
        return where.home / ".claude.json" if scope == "user" else where.cwd / ".mcp.json"
    if client == "vscode":
        user = _app_config_dir(where) / "Code" / "User" / "mcp.json"
        return user if scope == "user" else where.cwd / ".vscode" / "mcp.json"
    return (where.home if scope == "user" else where.cwd) / ".cursor" / "mcp.json"


def servers_key(client: Client) -> str:
    """The top-level key that holds the servers (VS Code calls it ``servers``)."""
    return "servers" if client == "vscode" else "mcpServers"


def launch_command() -> tuple[str, list[str]]:
    """This interpreter's ``mcp-gemma`` (absolute), or the interpreter with ``-m mcp_gemma``."""
    scripts = Path(sys.executable).parent
    for name in ("mcp-gemma", "mcp-gemma.exe"):
        if (scripts / name).is_file():
            return str(scripts / name), ["serve", "--transport", "stdio"]
    return sys.executable, ["-m", "mcp_gemma", "serve", "--transport", "stdio"]


def server_entry(client: Client, env: dict[str, str]) -> dict[str, Any]:
    """The entry for this install: stdio, absolute command, the given environment."""
    command, args = launch_command()
    entry: dict[str, Any] = {"command": command, "args": args, "env": dict(sorted(env.items()))}
    if client in ("vscode", "claude-code"):
        entry = {"type": "stdio", **entry}
    return entry


class ConfigChange(BaseModel):
    """What writing a config file would change."""

    client: Client
    scope: Scope
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff of the file, before and after."""
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"{self.path} (now)",
                tofile=f"{self.path} (new)",
            )
        )


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    if not path.exists():
        return "", {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return text, {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); nothing was "
            "changed. Fix the file (comments and trailing commas are not JSON) and run the command again"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"{path} holds a JSON {type(data).__name__}, not an object; nothing was changed"
        )
    return text, data


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def plan_install(client: Client, scope: Scope, env: dict[str, str], where: Where) -> ConfigChange:
    """The change that adds (or updates) this install's entry; every other key stays as it is."""
    path = config_path(client, scope, where)
    before, data = _read(path)
    key = servers_key(client)
    servers = data.setdefault(key, {})
    if not isinstance(servers, dict):
        raise InvalidInputError(f"{path}: '{key}' is not an object; nothing was changed")
    servers[ENTRY_NAME] = server_entry(client, env)
    return ConfigChange(client=client, scope=scope, path=path, before=before, after=_dump(data))


def plan_uninstall(client: Client, scope: Scope, where: Where) -> ConfigChange:
    """The change that removes exactly this install's entry (no change when there is none)."""
    path = config_path(client, scope, where)
    before, data = _read(path)
    servers = data.get(servers_key(client))
    if not isinstance(servers, dict) or ENTRY_NAME not in servers:
        return ConfigChange(client=client, scope=scope, path=path, before=before, after=before)
    del servers[ENTRY_NAME]
    return ConfigChange(client=client, scope=scope, path=path, before=before, after=_dump(data))


def apply(change: ConfigChange) -> Path | None:
    """Write the change (atomically); the previous file is kept next to it. Returns the backup's path."""
    if not change.changed:
        return None
    change.path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if change.path.exists():
        backup = change.path.with_name(change.path.name + BACKUP_SUFFIX)
        shutil.copy2(change.path, backup)
    tmp = change.path.with_name(change.path.name + ".mcp-gemma.tmp")
    tmp.write_text(change.after, encoding="utf-8")
    os.replace(tmp, change.path)
    return backup


class FoundEntry(BaseModel):
    """An mcp-gemma entry in some client's config."""

    client: Client
    scope: Scope
    path: Path
    command: str
    command_exists: bool
    points_here: bool


def find_entries(where: Where | None = None) -> list[FoundEntry]:
    """Every mcp-gemma entry in the client configs of this user and project (unreadable files skipped)."""
    where = where or Where.here()
    mine, _ = launch_command()
    found = []
    for client in CLIENTS:
        for scope in ("user", "project") if client != "claude-desktop" else ("user",):
            path = config_path(client, scope, where)
            try:
                _, data = _read(path)
            except (InvalidInputError, OSError):
                continue
            servers = data.get(servers_key(client))
            entry = servers.get(ENTRY_NAME) if isinstance(servers, dict) else None
            if not isinstance(entry, dict):
                continue
            command = str(entry.get("command", ""))
            found.append(
                FoundEntry(
                    client=client,
                    scope=scope,
                    path=path,
                    command=command,
                    command_exists=bool(command)
                    and (Path(command).is_file() or shutil.which(command) is not None),
                    points_here=command == mine,
                )
            )
    return found
