"""The built-in tools called directly: calculator bounds, timezones, the file sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from mcp_gemma.agent import sandbox
from mcp_gemma.agent.builtin_tools import build_toolbox, get_datetime, system_info
from mcp_gemma.agent.calculator import calculate
from mcp_gemma.errors import AccessDeniedError, InvalidInputError, NotFoundError
from mcp_gemma.settings import Settings


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(17 * 23) + 1", 392),
        ("2 ^ 10", 1024),
        ("sqrt(16) + abs(-2)", 6.0),
        ("10 // 3 + 10 % 3", 4),
        ("-2 ** 2", -4),
        ("factorial(10)", 3628800),
        ("2 ** 4000", 2**4000),
    ],
)
def test_calculator_values(expression: str, value: float) -> None:
    assert calculate(expression).result == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("9**9**9", "too large"),
        ("2**5000", "too large"),
        ("10**2000 * 10**2000", "too large"),
        ("'a' * 10**9", "only numbers"),
        ("[1] * 10**9", "not allowed"),
        ("__import__('os').system('id')", "unknown function"),
        ("(1).__class__", "not allowed"),
        ("x + 1", "unknown name"),
        ("1 / 0", "division by zero"),
        ("factorial(10**6)", "factorial takes"),
        ("2.0 ** 1e6", "out of range"),
        ("1e308 * 10", "not a finite number"),
        ("(-8) ** 0.5", "complex"),
        ("1 +", "cannot parse"),
        ("1" + "+1" * 300, "longer than"),
        ("lambda: 1", "not allowed"),
        ("round(5, -10**9)", "round takes"),
    ],
)
def test_calculator_refusals(expression: str, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        calculate(expression)


def test_datetime_validates_timezones() -> None:
    assert get_datetime("Europe/Paris").timezone == "Europe/Paris"
    for bad in ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", ""]:
        with pytest.raises(InvalidInputError, match="unknown timezone"):
            get_datetime(bad)


def test_system_info_has_no_environment() -> None:
    info = system_info().model_dump()
    assert info["cpu_count"] and "env" not in info


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "a.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    os.symlink(tmp_path / "secret.txt", base / "escape.txt")
    os.symlink(tmp_path, base / "up")
    os.symlink(base / "a.txt", base / "inside.txt")
    return base.resolve()


@pytest.mark.anyio
async def test_sandbox_reads_inside_and_refuses_escapes(root: Path, tmp_path: Path) -> None:
    roots = [root]
    assert (await sandbox.read_file("a.txt", roots, 100)).text == "hello"
    assert (await sandbox.read_file(str(root / "sub/../a.txt"), roots, 100)).text == "hello"
    assert (await sandbox.read_file("inside.txt", roots, 100)).text == "hello"
    for escape in [
        "../secret.txt",
        str(tmp_path / "secret.txt"),
        "escape.txt",
        "up/secret.txt",
        "/etc/passwd",
    ]:
        with pytest.raises(AccessDeniedError, match="outside the allowed roots"):
            await sandbox.read_file(escape, roots, 100)
    with pytest.raises(AccessDeniedError, match="no allowed roots"):
        await sandbox.read_file("a.txt", [], 100)
    with pytest.raises(NotFoundError):
        await sandbox.read_file("missing.txt", roots, 100)


@pytest.mark.anyio
async def test_sandbox_limits_size_and_binary(root: Path) -> None:
    (root / "big.txt").write_text("x" * 1000, encoding="utf-8")
    (root / "bin.dat").write_bytes(b"\x00\x01\x02")
    content = await sandbox.read_file("big.txt", [root], 10)
    assert (content.bytes_read, content.size, content.truncated) == (10, 1000, True)
    with pytest.raises(InvalidInputError, match="binary"):
        await sandbox.read_file("bin.dat", [root], 10)
    os.mkfifo(root / "pipe")
    with anyio.fail_after(5):  # a FIFO must not block the server
        with pytest.raises(InvalidInputError, match="not a regular file"):
            await sandbox.read_file("pipe", [root], 10)
        with pytest.raises(InvalidInputError, match="not a regular file"):
            await sandbox.write_file("pipe", "x", [root], 10, overwrite=True)
    listing = await sandbox.list_directory(".", [root], 2)
    assert listing.truncated and len(listing.entries) == 2


@pytest.mark.anyio
async def test_sandbox_write_stays_inside(root: Path, tmp_path: Path) -> None:
    report = await sandbox.write_file("sub/new.txt", "hi", [root], 100, overwrite=False)
    assert report.created and (root / "sub/new.txt").read_text(encoding="utf-8") == "hi"
    with pytest.raises(InvalidInputError, match="exists"):
        await sandbox.write_file("sub/new.txt", "again", [root], 100, overwrite=False)
    for escape in ["../evil.txt", "up/evil.txt", "escape.txt"]:
        with pytest.raises(AccessDeniedError):
            await sandbox.write_file(escape, "x", [root], 100, overwrite=True)
    assert not (tmp_path / "evil.txt").exists()
    assert (tmp_path / "secret.txt").read_text(encoding="utf-8") == "top secret"


def test_toolbox_offers_only_what_can_work(settings: Settings, tmp_path: Path) -> None:
    assert set(build_toolbox(settings)) == {"calculator", "get_datetime", "system_info"}
    rich = Settings(
        data_dir=tmp_path,
        allowed_roots=[tmp_path],
        agent={
            "enable_write_file": True,
            "fetch_allowed_hosts": ["example.org"],
            "search_endpoint": "http://s",
        },
    )
    tools = build_toolbox(rich)
    assert {"read_file", "list_directory", "write_file", "fetch_url", "web_search"} <= set(tools)
    assert not tools["write_file"].default
    assert tools["fetch_url"].untrusted_output
