"""Start-up cost: spawn → ``initialize`` and spawn → ``tools/list`` answers over stdio, and idle RSS,
vs a one-tool server, interleaved in the same run.

Idle RSS is read one second after ``tools/list`` was answered (ours registers its tools right after
``initialize``, then opens Redis and imports the services), so it covers everything loaded at start.

Targets (issue 18): initialize ≤ 1.05× the one-tool server's time, ``tools/list`` answered ≤ 1.3×
its time; idle RSS ≤ its RSS + 50 MB. The load average is printed beside the figures: on a shared
machine they are loaded figures. Usage: ``python benches/bench_startup.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_start(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INIT) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    assert '"serverInfo"' in line, line
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}) + "\n")
    proc.stdin.flush()
    # Ours answers initialize before its tools are registered (their imports run after it):
    # wait for the tool list, so the idle RSS includes everything loaded at start.
    line = proc.stdout.readline()
    ready = time.perf_counter() - start
    assert '"tools"' in line, line
    time.sleep(1.0)  # idle
    rss = rss_mib(proc.pid)
    proc.stdin.close()
    proc.wait(timeout=30)
    return elapsed, ready, rss


def compile_package() -> None:
    """Bring ``mcp_gemma``'s bytecode up to date, as ``pip install`` does: run from a checkout
    with ``PYTHONDONTWRITEBYTECODE`` set (this machine sets it), or with stale ``.pyc`` files after
    an edit, every start recompiled the changed modules (~40 ms), while the SDK that both servers
    import is compiled in site-packages."""
    import compileall

    import mcp_gemma

    compileall.compile_dir(str(Path(mcp_gemma.__file__).parent), quiet=1)


def run(quick: bool = False) -> dict[str, Any]:
    runs = 3 if quick else 7
    compile_package()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_")}
    ours_t, ours_ready, ours_rss, peer_t, peer_ready, peer_rss = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        env["MCP_GEMMA_DATA_DIR"] = tmp
        ours = [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "stdio"]
        peer = [sys.executable, str(HERE / "_one_tool_server.py")]
        one_start(ours, env)  # warm the page cache and the embedded Redis files
        one_start(peer, env)
        for _ in range(runs):
            t, ready, r = one_start(ours, env)
            ours_t.append(t)
            ours_ready.append(ready)
            ours_rss.append(r)
            t, ready, r = one_start(peer, env)
            peer_t.append(t)
            peer_ready.append(ready)
            peer_rss.append(r)
    result = {
        "initialize_s": statistics.median(ours_t),
        "peer_initialize_s": statistics.median(peer_t),
        "tools_listed_s": statistics.median(ours_ready),
        "peer_tools_listed_s": statistics.median(peer_ready),
        "idle_rss_mib": statistics.median(ours_rss),
        "peer_idle_rss_mib": statistics.median(peer_rss),
    }
    result["time_ratio"] = result["initialize_s"] / result["peer_initialize_s"]
    result["tools_listed_ratio"] = result["tools_listed_s"] / result["peer_tools_listed_s"]
    result["rss_delta_mib"] = result["idle_rss_mib"] - result["peer_idle_rss_mib"]
    result["load_average"] = os.getloadavg()[0]
    load = f"(load average {result['load_average']:.2f})"
    print(
        f"startup: initialize {result['initialize_s'] * 1000:.0f} ms vs one-tool MCPServer "
        f"{result['peer_initialize_s'] * 1000:.0f} ms → {result['time_ratio']:.2f}× (target ≤ 1.05×) {load}"
    )
    print(
        f"startup: tools/list answered after {result['tools_listed_s'] * 1000:.0f} ms vs "
        f"{result['peer_tools_listed_s'] * 1000:.0f} ms → {result['tools_listed_ratio']:.2f}× "
        f"(target ≤ 1.3×) {load}"
    )
    print(
        f"startup: idle RSS {result['idle_rss_mib']:.1f} MiB vs {result['peer_idle_rss_mib']:.1f} MiB "
        f"→ +{result['rss_delta_mib']:.1f} MiB (target ≤ +50 MiB)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
