"""The package's layers (ARCHITECTURE.md), checked over every import statement of ``mcp_gemma``.

Front ends (``server``, ``cli``, ``api``) sit on the composition root (``state``), which builds the
services (``embeddings``, ``llm``, ``rag``, ``memory``, ``agent``, ``chat``), which sit on the foundation (the
store, the native facade, settings, errors and the small shared helpers). A module may import its own
package and anything below it, never upwards or sideways between front ends; among the services, only
one that comes earlier in the order above. Every import counts: module level, inside functions and
under ``TYPE_CHECKING``. Only ``native.py`` imports the Rust core, and only the MCP server imports the
MCP SDK.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mcp_gemma"

FRONT_ENDS = frozenset({"server", "cli", "api", "__main__"})
COMPOSITION = frozenset({"report", "state", "transfer"})
# Services in dependency order: each may import only those before it.
SERVICES = ("embeddings", "llm", "rag", "memory", "agent", "chat")
SERVICE_RANK = {"embeddings": 0, "llm": 1, "rag": 2, "memory": 2, "agent": 3, "chat": 4}
FOUNDATION = frozenset(
    {
        "",  # the package root (its version)
        "_rust_core",
        "aio",
        "client_config",
        "compute",
        "doctor",
        "errors",
        "fusion",
        "health",
        "metrics",
        "native",
        "outbound_http",
        "security",
        "settings",
        "store",
    }
)
# Allowed upward or sideways edges, each with its reason.
EXCEPTIONS = {
    # `mcp-gemma serve` starts the MCP server: the one place the CLI reaches another front end.
    ("mcp_gemma.cli.launch", "server"),
    # One port: the HTTP transport serves the REST API beside the MCP endpoint.
    ("mcp_gemma.server.run", "api"),
    # The HTTP guard in front of both answers its refusals as the REST API's problem+json.
    ("mcp_gemma.server.guard", "api"),
    # `python -m mcp_gemma` is the CLI.
    ("mcp_gemma.__main__", "cli"),
}


TYPE_CHECKING_TESTS = frozenset({"TYPE_CHECKING", "typing.TYPE_CHECKING"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``; ``from a import b`` gives ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            assert node.module is not None
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def resolve(target: str) -> str:
    """The module a dotted import target lies in (``mcp_gemma.x.name`` -> ``mcp_gemma.x``)."""
    names = module_names()
    while target not in names and "." in target:
        target = target.rpartition(".")[0]
    return target


def package_of(module: str) -> str:
    """The first component under ``mcp_gemma`` ('' for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> tuple[int, float]:
    """(layer, rank within the services) of a ``mcp_gemma`` module; higher layers sit on lower ones."""
    parts = module.split(".")
    top = package_of(module)
    if top in SERVICES and len(parts) > 2 and parts[2] == "config":
        return 0, 0.0  # the settings models of a service: read by settings.py, import nothing
    if top in FOUNDATION or (top not in SERVICES and top not in COMPOSITION and top not in FRONT_ENDS):
        if top not in FOUNDATION:  # a new root module: say where it belongs
            raise AssertionError(f"mcp_gemma.{top} is in no layer; add it to tests/unit/test_architecture.py")
        return 0, 0.0
    if top in SERVICES:
        return 1, float(SERVICE_RANK[top])
    if top in COMPOSITION:
        return 2, 0.0
    return 3, 0.0


@functools.cache
def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@functools.cache
def module_names() -> frozenset[str]:
    return frozenset(module_name(p) for p in sources())


def all_imports() -> Iterator[tuple[str, int, str]]:
    for path in sources():
        for line, target in imports(path):
            yield module_name(path), line, resolve(target) if target.startswith("mcp_gemma.") else target


def test_the_package_has_modules() -> None:
    assert len(sources()) > 50


def test_no_layer_imports_upward() -> None:
    wrong = []
    for module, line, target in all_imports():
        if not target.startswith("mcp_gemma.") or package_of(target) == package_of(module):
            continue
        if (module, package_of(target)) in EXCEPTIONS:
            continue
        here, there = layer(module), layer(target)
        if there[0] > here[0]:
            wrong.append(f"{module}:{line} imports {target} (upward)")
        elif there[0] == here[0] == 3:
            wrong.append(f"{module}:{line} imports {target} (another front end)")
        elif there[0] == here[0] == 1 and there[1] >= here[1]:
            wrong.append(f"{module}:{line} imports {target} (a service at or after its own rank)")
    assert not wrong, "\n".join(wrong)


def test_only_native_imports_the_rust_core() -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module, line, target in all_imports()
        if (target == "mcp_gemma._rust_core" or target.startswith("mcp_gemma._rust_core."))
        and module != "mcp_gemma.native"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("sdk", ["mcp", "mcp_types"])
def test_only_the_mcp_server_imports_the_sdk(sdk: str) -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module, line, target in all_imports()
        if (target == sdk or target.startswith(f"{sdk}.")) and not module.startswith("mcp_gemma.server")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    """No two modules import each other, however indirectly (imports under TYPE_CHECKING aside)."""
    graph: dict[str, set[str]] = {}
    names = module_names()
    for path in sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If)
            and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
            for stmt in node.body
            for n in ast.walk(stmt)
        }
        edges = graph.setdefault(module_name(path), set())
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [f"{node.module}.{a.name}" for a in node.names] + [str(node.module)]
            )
            for target in targets:
                # the longest module name that the target starts with (a name imported from a module)
                while target and target not in names:
                    target = target.rpartition(".")[0]
                if target and target != module_name(path) and target != "mcp_gemma":
                    edges.add(target)
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)
