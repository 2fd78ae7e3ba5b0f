"""Render a ``run_all.py`` results file as the Markdown table benches/README.md and README.md quote.

Usage: ``python benches/report.py [RESULTS.json]`` (default ``benches/results.json``).

One row per figure: the bench's 1-minute load average at its start (``run_all.py`` records it), ours,
the peer from the same run, the ratio (> 1 means we are faster or smaller), the issue's target and
whether this run meets it. A bench the file lacks, or whose peer was not installed, gives no row or a
row without the peer; a bench started above the quiet bar is flagged. Nothing here measures: it only
formats what the run recorded, so the tables cannot drift from the figures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QUIET = 0.5

Row = tuple[str, str, str, str, str, str]  # what, ours, peer, ratio, target, met


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _x(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def _ratio(peer: float | None, ours: float | None) -> float | None:
    """How many times faster ours is when both are times (or slower rates swapped by the caller)."""
    if not peer or not ours:
        return None
    return peer / ours


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def _generate(b: dict[str, Any]) -> Iterator[Row]:
    ours, peer = b.get("ours_q8") or {}, b.get("llama_cpp") or {}
    has_peer = "decode_tok_s" in peer
    runs = " / ".join(_f(x, 1) for x in ours.get("decode_runs", []))
    peer_runs = " / ".join(_f(x, 1) for x in peer.get("decode_runs", []))
    for key, what, digits, peer_extra, target in (
        (
            "decode_tok_s",
            f"Gemma 3 270M decode, int8, {b.get('threads')} threads (median of the runs: {runs})",
            1,
            f" ({peer_runs})",
            1.8,
        ),
        (
            "prompt_tok_s",
            f"Gemma prompt processing ({b.get('prompt_words')}-word prompt, q8 kernel {b.get('q8_kernel')})",
            0,
            "",
            1.5,
        ),
    ):
        r = _ratio(ours.get(key), peer.get(key)) if has_peer else None
        yield (
            what,
            f"{_f(ours.get(key), digits)} tok/s",
            f"llama.cpp {_f(peer.get(key), digits)} tok/s{peer_extra}" if has_peer else "not installed",
            _x(r),
            f"≥ {target}×",
            _met(None if r is None else r >= target),
        )
    load = _ratio(peer.get("load_s"), ours.get("load_s")) if has_peer else None
    yield (
        "Gemma cached load / peak RSS while loading ÷ resident",
        f"{_f(ours.get('load_s'))} s / {_f(ours.get('load_peak_vs_resident'), 3)}",
        f"llama.cpp {_f(peer.get('load_s'))} s / {_f(peer.get('load_peak_vs_resident'), 3)}"
        if has_peer
        else "not installed",
        _x(load),
        "≤ llama.cpp's load; peak ≤ 1.1× resident",
        _met(None if load is None else load >= 1.0 and (ours.get("load_peak_vs_resident") or 9.0) <= 1.1),
    )
    yield (
        "Gemma resident memory",
        f"{_f(ours.get('rss_mib'), 0)} MiB",
        f"llama.cpp {_f(peer.get('rss_mib'), 0)} MiB" if has_peer else "not installed",
        _x(_ratio(peer.get("rss_mib"), ours.get("rss_mib"))) if has_peer else "—",
        "",
        "",
    )


def _embed(b: dict[str, Any]) -> Iterator[Row]:
    rate, ratio = b.get("sentences_per_s", {}), b.get("ratio_vs_sentence_transformers", {})
    peer = f"sentence-transformers {_f(rate.get('peer'), 1)} sent/s"
    for key, label in (("embedder", "ours_embedder"), ("service", "ours_service")):
        r = ratio.get(key)
        yield (
            f"MiniLM batch {b.get('batch_size')} × {b.get('words_per_sentence')} words, "
            + ("our embedder" if key == "embedder" else "`EmbeddingService.embed` (the server's path)"),
            f"{_f(rate.get(label), 1)} sent/s",
            peer,
            _x(r),
            "≥ 1.0×",
            _met(None if r is None else r >= 1.0),
        )
    q = b.get("one_query_p50_ms", {})
    yield (
        "MiniLM one query, p50",
        f"{_f(q.get('ours_embedder'))} ms",
        f"sentence-transformers {_f(q.get('peer'))} ms",
        _x(b.get("one_query_speedup_vs_sentence_transformers")),
        "",
        "",
    )


def _topk(b: dict[str, Any]) -> Iterator[Row]:
    n, d = b.get("n"), b.get("dim")
    peers = f"numpy {_f(b.get('numpy_single_ms'))} ms"
    if "faiss_single_ms" in b:
        peers += f" / faiss {_f(b.get('faiss_single_ms'))} ms"
    for key, label, vs_numpy, vs_faiss in (
        (
            "index_f32_single_ms",
            "`VectorIndex` (what search uses)",
            "index_f32_vs_numpy",
            "index_f32_vs_faiss",
        ),
        ("ours_single_ms", "free `topk`", "single_vs_numpy", "single_vs_faiss"),
    ):
        rn, rf = b.get(vs_numpy), b.get(vs_faiss)
        yield (
            f"exact top-{b.get('k')}, {n:,} × {d} f32, one query, {label}",
            f"{_f(b.get(key))} ms",
            peers,
            f"{_x(rn)} / {_x(rf)}",
            "≥ 1.0× numpy, ≥ 2.5× faiss",
            _met(None if rn is None else rn >= 1.0 and (rf is None or rf >= 2.5)),
        )
    batch_peers = f"numpy {_f(b.get('numpy_batch_ms'), 1)} ms"
    if "faiss_batch_ms" in b:
        batch_peers += f" / faiss {_f(b.get('faiss_batch_ms'), 1)} ms"
    yield (
        f"same, batch of {b.get('batch')}",
        f"{_f(b.get('ours_batch_ms'), 1)} ms",
        batch_peers,
        f"{_x(b.get('batch_vs_numpy'))} / {_x(b.get('batch_vs_faiss'))}",
        "",
        "",
    )
    r = b.get("int8_vs_f32_index")
    yield (
        "int8 index, one query (recall@10 against exact)",
        f"{_f(b.get('index_int8_single_ms'))} ms, recall {_f(b.get('int8_recall_at_10'), 3)}",
        f"our f32 index {_f(b.get('index_f32_single_ms'))} ms",
        _x(r),
        "≥ 3×",
        _met(None if r is None else r >= 3.0),
    )


def _ann(b: dict[str, Any]) -> Iterator[Row]:
    ref = b.get("reference")
    if not isinstance(ref, dict):
        return
    yield (
        f"HNSW top-10, {b.get('n'):,} × {b.get('dim')}: "
        f"recall at hnswlib's ef={ref.get('hnswlib_ef')} latency",
        f"{_f(ref.get('ours_recall_at_hnswlib_latency'), 3)}",
        f"hnswlib {_f(ref.get('hnswlib_recall'), 3)} at {_f(ref.get('hnswlib_ms'), 3)} ms",
        f"{_x(ref.get('speedup_at_equal_recall'))} at equal recall",
        "",
        "",
    )
    yield (
        "HNSW build, same threads",
        f"{_f(b.get('ours_build_s'), 1)} s",
        f"hnswlib {_f(b.get('hnswlib_build_s'), 1)} s",
        _x(b.get("build_vs_hnswlib")),
        "",
        "",
    )


def _keyword(b: dict[str, Any]) -> Iterator[Row]:
    peers = [f"bm25s {_f(b.get('bm25s_query_ms'), 3)} ms"] if "bm25s_query_ms" in b else []
    if "rank_bm25_query_ms" in b:
        peers.append(f"rank-bm25 {_f(b.get('rank_bm25_query_ms'), 1)} ms")
    yield (
        f"BM25 top-10 over {b.get('docs'):,} chunks, per query",
        f"{_f(b.get('ours_query_ms'), 3)} ms",
        " / ".join(peers) or "not installed",
        " / ".join(_x(b.get(k)) for k in ("vs_bm25s", "vs_rank_bm25") if k in b) or "—",
        "",
        "",
    )


def _cache(b: dict[str, Any]) -> Iterator[Row]:
    yield (
        "LRU + TTL cache, mixed get / set",
        f"{_f(b.get('ours_ns_per_op'), 0)} ns/op",
        f"cachetools {_f(b.get('cachetools_ns_per_op'), 0)} / "
        f"dict LRU {_f(b.get('dict_lru_ns_per_op'), 0)} ns/op",
        f"{_x(b.get('vs_cachetools'))} / {_x(b.get('vs_dict_lru'))}",
        "",
        "",
    )


def _p50(b: dict[str, Any], key: str) -> float | None:
    v = b.get(key)
    return v.get("p50_ms") if isinstance(v, dict) else None


def _search(b: dict[str, Any]) -> Iterator[Row]:
    peer = _p50(b, "peer_embed_new")
    name = str(b.get("peer_embed", "")).replace("_", "-")
    yield (
        f"`search_documents` {b.get('chunks'):,} chunks, stdio, new query p50 / p99",
        f"{_f(_p50(b, 'search_new'))} / {_f((b.get('search_new') or {}).get('p99_ms'))} ms",
        f"{name} embedding a new query alone {_f(peer)} ms",
        _x(_ratio(peer, _p50(b, "search_new"))),
        "≤ 7 ms (set on a faster host)",
        _met(None if _p50(b, "search_new") is None else (_p50(b, "search_new") or 99.0) <= 7.0),
    )
    for key, label in (("search_cached", "repeated query"), ("hybrid_cached", "`hybrid_search`, repeated")):
        ours, floor = _p50(b, key), _p50(b, "health")
        yield (
            f"same, {label}, p50",
            f"{_f(ours)} ms",
            f"`health_check` round trip {_f(floor)} ms",
            f"+{_f((ours or 0.0) - (floor or 0.0))} ms",
            "p50 < 10 ms",
            _met(None if ours is None else ours < 10.0),
        )


def _memory(b: dict[str, Any]) -> Iterator[Row]:
    peer = _p50(b, "peer_embed_new")
    name = str(b.get("peer_embed", "")).replace("_", "-")
    for key, label in (("store_new", "`store_memory`"), ("recall_new", "`recall_memory`")):
        ours = _p50(b, key)
        yield (
            f"{label} {b.get('memories', 0):,} memories, new text, p50",
            f"{_f(ours)} ms",
            f"{name} embedding a new text alone {_f(peer)} ms",
            _x(_ratio(peer, ours)),
            "≤ 7 ms (set on a faster host)",
            _met(None if ours is None else ours <= 7.0),
        )
    for key, label in (("store_cached", "`store_memory`"), ("recall_cached", "`recall_memory`")):
        ours, floor = _p50(b, key), _p50(b, "peer_mcp_call_floor")
        yield (
            f"{label}, cached embedding, p50",
            f"{_f(ours)} ms",
            f"one-tool call floor {_f(floor)} ms",
            f"+{_f((ours or 0.0) - (floor or 0.0))} ms",
            "",
            "",
        )


def _ingest(b: dict[str, Any]) -> Iterator[Row]:
    per_doc = b.get("per_document")
    for run, label, target in (
        (b, "`batch_ingest` (`RagService.ingest_documents`)", 0.8),
        (per_doc, "one `ingest_document` per document over stdio", 0.9),
    ):
        if not isinstance(run, dict):
            continue
        r = run.get("ratio_ingest_vs_embed_only")
        yield (
            f"ingest, {label}, {run.get('documents'):,} docs",
            f"{_f(run.get('ingest_docs_per_s'), 1)} docs/s",
            f"embedding alone {_f(run.get('embed_only_docs_per_s'), 1)} docs/s",
            _x(r),
            f"≥ {target}×",
            _met(None if r is None else r >= target),
        )
    if isinstance(per_doc, dict) and "embed_each_document_docs_per_s" in per_doc:
        yield (
            "same, against embedding each document's chunks in its own call (the passes the calls make)",
            f"{_f(per_doc.get('ingest_docs_per_s'), 1)} docs/s",
            f"embedding one call per document {_f(per_doc.get('embed_each_document_docs_per_s'), 1)} docs/s",
            _x(per_doc.get("ratio_ingest_vs_embed_each_document")),
            "",
            "",
        )


def _startup(b: dict[str, Any]) -> Iterator[Row]:
    ours, peer = b.get("initialize_s"), b.get("peer_initialize_s")
    yield (
        "spawn → `initialize` over stdio",
        f"{_f((ours or 0.0) * 1e3, 0)} ms",
        f"one-tool MCPServer {_f((peer or 0.0) * 1e3, 0)} ms",
        f"{_f(b.get('time_ratio'))}× its time",
        "≤ 1.05× its time",
        _met(None if b.get("time_ratio") is None else b["time_ratio"] <= 1.05),
    )
    ours, peer = b.get("tools_listed_s"), b.get("peer_tools_listed_s")
    yield (
        "spawn → `tools/list` answered",
        f"{_f((ours or 0.0) * 1e3, 0)} ms",
        f"{_f((peer or 0.0) * 1e3, 0)} ms",
        f"{_f(b.get('tools_listed_ratio'))}× its time",
        "≤ 1.3× its time",
        _met(None if b.get("tools_listed_ratio") is None else b["tools_listed_ratio"] <= 1.3),
    )
    yield (
        "idle RSS after `tools/list`",
        f"{_f(b.get('idle_rss_mib'), 1)} MiB",
        f"{_f(b.get('peer_idle_rss_mib'), 1)} MiB",
        f"+{_f(b.get('rss_delta_mib'), 1)} MiB",
        "≤ +50 MiB",
        _met(None if b.get("rss_delta_mib") is None else b["rss_delta_mib"] <= 50),
    )


def _rest(b: dict[str, Any]) -> Iterator[Row]:
    yield (
        "REST `POST /v1/search` over HTTP vs MCP `search_documents` over HTTP, p50",
        f"{_f(_p50(b, 'rest_http'))} ms",
        f"MCP {_f(_p50(b, 'mcp_http'))} ms; service call alone {_f(_p50(b, 'service'))} ms",
        _x(_ratio(_p50(b, "mcp_http"), _p50(b, "rest_http"))),
        "",
        "",
    )


def _load(b: dict[str, Any]) -> Iterator[Row]:
    conc, one = b.get("concurrent") or {}, b.get("one_session_peer") or {}
    bad = sum(v.get("errors", 0) + v.get("timeouts", 0) for v in conc.values() if isinstance(v, dict))
    worst = max((v.get("p99_ms", 0.0) for v in conc.values() if isinstance(v, dict)), default=None)
    yield (
        f"{b.get('sessions')} HTTP sessions × {b.get('calls_per_session')} mixed calls at once",
        f"{_f(b.get('calls_per_s'), 1)} calls/s, worst p99 {_f(worst, 0)} ms, {bad} errors / timeouts",
        "one session alone: p50 "
        + ", ".join(f"{k} {_f(v.get('p50_ms'), 0)}" for k, v in one.items() if isinstance(v, dict))
        + " ms",
        "",
        "no errors or timeouts",
        _met(bad == 0),
    )


def _scale(b: dict[str, Any]) -> Iterator[Row]:
    yield (
        f"index load from Redis at start-up, {b.get('chunks', 0):,} chunks",
        f"{_f(b.get('index_load_s_per_100k'))} s per 100k chunks",
        "",
        "",
        "",
        "",
    )
    if b.get("ratio_two_vs_one") is not None:
        one, two = b.get("ingest_one_replica") or {}, b.get("ingest_two_replicas") or {}
        yield (
            "ingest with two replicas over one Redis",
            f"{_f(two.get('docs_per_s_total'), 1)} docs/s",
            f"one replica {_f(one.get('docs_per_s_total'), 1)} docs/s",
            _x(b.get("ratio_two_vs_one")),
            "",
            "",
        )


RENDER: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "bench_generate": _generate,
    "bench_embed": _embed,
    "bench_topk": _topk,
    "bench_ann": _ann,
    "bench_keyword": _keyword,
    "bench_cache": _cache,
    "bench_search": _search,
    "bench_memory": _memory,
    "bench_ingest": _ingest,
    "bench_startup": _startup,
    "bench_rest": _rest,
    "bench_load": _load,
    "bench_scale": _scale,
}


def render(results: dict[str, Any]) -> str:
    """The Markdown table of ``results`` (a ``run_all.py`` file), one row per figure."""
    lines = [
        "| what | load avg at start | ours | peer (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    benches = results.get("benches", {})
    for name, fn in RENDER.items():
        bench = benches.get(name)
        if not isinstance(bench, dict) or "error" in bench or "skipped" in bench:
            continue
        run = bench.get("run") or {}
        start = run.get("load_start") or []
        load = "?" if not start else f"{start[0]:.2f}"
        if start and start[0] >= QUIET:
            load += " (not quiet)"
        for what, ours, peer, ratio, target, met in fn(bench):
            lines.append(f"| {what} | {load} | {ours} | {peer} | {ratio} | {target} | {met} |")
    return "\n".join(lines)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    machine = results.get("machine", {})
    quick = " · quick run: not figures to quote" if results.get("quick") else ""
    print(
        f"{results.get('date')} · {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"kernels {results.get('simd')}, int8 {results.get('int8', 'not recorded')}{quick}\n"
    )
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
