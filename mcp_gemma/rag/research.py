"""research_query: hybrid search + memory recall + allow-listed URLs, then a cited answer when a model exists.

Memory and the language model belong to other services; they are used when the server has them
(``state.memory``, ``state.llm``) and the report says plainly when a step was skipped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from mcp_gemma.errors import InvalidInputError, McpGemmaError
from mcp_gemma.rag.chunking import split
from mcp_gemma.rag.models import Evidence, ResearchReport
from mcp_gemma.rag.service import RagService

logger = logging.getLogger(__name__)

URL_CHUNKS_PER_PAGE = 2
EVIDENCE_CHARS = 1_200
EXTRACTIVE_SENTENCES = 2
CITATION = re.compile(r"\[((?:chunk|memory|url):[^\]\s]+)\]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Lines of the prompt itself: an answer that contains one has copied the prompt, not answered.
PROMPT_MARKERS = ("Evidence:", "Question:", "Answer the question using only the evidence")
COMPLETION_STOPS = ("\n\n", "\nQuestion:", "\nEvidence:")


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def check_citations(text: str, evidence: Sequence[Evidence]) -> tuple[str, list[str], bool]:
    """The answer with citations of references not in ``evidence`` removed, the valid references it
    cites (in order, once each), and whether it copied the prompt instead of answering."""
    known = {ev.ref for ev in evidence}
    cited: list[str] = []

    def keep(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref not in known:
            return ""
        if ref not in cited:
            cited.append(ref)
        return match.group(0)

    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", CITATION.sub(keep, text)).strip()
    copied = any(marker in cleaned for marker in PROMPT_MARKERS) or any(
        f"[{ev.ref}] {ev.text[:EVIDENCE_CHARS]}" in cleaned for ev in evidence if len(ev.text) >= 60
    )
    return cleaned, cited, copied


async def extractive_answer(
    rag: RagService, query: str, evidence: Sequence[Evidence]
) -> tuple[str, list[str]]:
    """The evidence sentences closest in meaning to ``query`` (from the best three items), each with
    its reference: what is returned when the model's answer cannot be trusted."""
    candidates: list[tuple[str, str]] = []
    for ev in evidence[:3]:
        for sentence in SENTENCE_END.split(" ".join(ev.text.split())):
            if len(sentence) >= 12:
                candidates.append((sentence, ev.ref))
    if not candidates:
        return "", []
    qvec = await rag.embeddings.embed_one(query)
    vectors = await rag.embeddings.embed([c[0] for c in candidates])
    order = np.argsort(-(vectors @ qvec), kind="stable")[:EXTRACTIVE_SENTENCES]
    picked = [candidates[int(i)] for i in order]
    refs = list(dict.fromkeys(ref for _, ref in picked))
    return " ".join(f"{sentence} [{ref}]" for sentence, ref in picked), refs


def build_prompt(query: str, evidence: Sequence[Evidence]) -> str:
    """The instruction and numbered evidence a model answers from."""
    lines = [
        "Answer the question using only the evidence below. Cite every claim with the evidence reference in "
        "square brackets, e.g. [chunk:12]. If the evidence does not answer the question, say so. "
        "Answer in at most five sentences.",
        "",
        "Evidence:",
    ]
    for ev in evidence:
        lines.append(f"[{ev.ref}] {ev.text[:EVIDENCE_CHARS]}")
    lines += ["", f"Question: {query}", "Answer:"]
    return "\n".join(lines)


async def _stops_for(llm: Any) -> tuple[str, ...]:
    """Stops for a base checkpoint, which would otherwise go on to write the next question."""
    ensure = getattr(llm, "ensure_loaded", None)
    if ensure is None:
        return ()
    model = await ensure()
    return COMPLETION_STOPS if model.info.prompt_style == "completion" else ()


async def _memory_evidence(
    memory: Any, query: str, limit: int, floor: float, notes: list[str]
) -> list[Evidence]:
    """Recalled memories as evidence: read only (research changes nothing), and only those whose
    similarity reaches ``floor`` (rag.research_memory_min_similarity)."""
    if memory is None or not hasattr(memory, "recall"):
        notes.append("memory recall skipped: this server has no memory service")
        return []
    try:
        result = await memory.recall(query, k=limit, touch=False)
    except McpGemmaError as exc:
        notes.append(f"memory recall failed: {exc}")
        return []
    out = []
    dropped = 0
    for hit in _attr(result, "hits", []) or []:
        item = _attr(hit, "item", hit)
        content = _attr(item, "content")
        if not content:
            continue
        similarity = _attr(hit, "similarity", _attr(hit, "score", 0.0))
        if float(similarity or 0.0) < floor:
            dropped += 1
            continue
        out.append(
            Evidence(
                kind="memory",
                ref=f"memory:{_attr(item, 'id', '?')}",
                text=str(content),
                score=float(similarity or 0.0),
                source=str(_attr(item, "tier", "memory")),
            )
        )
    if dropped:
        notes.append(f"{dropped} recalled memories left out: similarity below {floor}")
    return out


async def _url_evidence(
    rag: RagService, urls: Sequence[str], qvec: np.ndarray[Any, Any], notes: list[str]
) -> list[Evidence]:
    from mcp_gemma.rag import web  # httpx loads when URLs are asked for, not at start-up

    out: list[Evidence] = []
    for url in urls:
        try:
            page = await web.fetch_page(url, rag.settings)
        except TimeoutError:
            notes.append(f"{url}: no answer within {rag.settings.url_timeout_s} s; skipped")
            continue
        except InvalidInputError as exc:
            notes.append(f"{url}: {exc}; skipped")
            continue
        except Exception as exc:
            notes.append(f"{url}: fetch failed ({type(exc).__name__}: {exc}); skipped")
            continue
        chunks = split(page.text, rag.settings) if page.text.strip() else []
        if not chunks:
            notes.append(f"{url}: no readable text")
            continue
        if page.truncated:
            notes.append(f"{url}: cut at {rag.settings.url_max_bytes:,} bytes (rag.url_max_bytes)")
        vectors = await rag.embeddings.embed([c.text for c in chunks])
        scores = vectors @ qvec
        for i in np.argsort(-scores)[:URL_CHUNKS_PER_PAGE]:
            c = chunks[int(i)]
            out.append(
                Evidence(
                    kind="url",
                    ref=page.url if len(chunks) == 1 else f"{page.url}#{c.start}",
                    text=c.text,
                    score=float(scores[int(i)]),
                    source=page.url,
                    start=c.start,
                    end=c.end,
                )
            )
    return out


async def research(
    rag: RagService,
    query: str,
    *,
    limit: int = 8,
    urls: Sequence[str] = (),
    filter: Mapping[str, Any] | None = None,
    use_memory: bool = True,
    memory: Any = None,
    llm: Any = None,
    answer: bool = True,
) -> ResearchReport:
    """Gather ranked evidence for ``query`` and, with a model, a short answer citing it."""
    started = time.perf_counter()
    notes: list[str] = []
    if len(urls) > rag.settings.max_urls:
        raise InvalidInputError(
            f"{len(urls)} URLs given; the limit is {rag.settings.max_urls} (rag.max_urls)"
        )
    if urls:
        from mcp_gemma.rag import web

    for url in urls:  # refuse the whole call before any work if one URL is not allowed
        await web.check_url(url, rag.settings)
    hits = await rag.hybrid_search(query, limit=limit, filter=filter)
    qvec = await rag.embeddings.embed_one(query)
    evidence: list[Evidence] = []
    for hit in hits.hits:
        vec = rag.index.vector_of(hit.chunk_id)
        cosine = float(vec @ qvec) if vec is not None else (hit.vector_score or 0.0)
        evidence.append(
            Evidence(
                kind="document",
                ref=f"chunk:{hit.chunk_id}",
                text=hit.text,
                score=cosine,
                source=hit.doc_id,
                start=hit.start,
                end=hit.end,
            )
        )
    if use_memory:
        floor = rag.settings.research_memory_min_similarity
        evidence += await _memory_evidence(memory, query, limit, floor, notes)
    if urls:
        evidence += await _url_evidence(rag, urls, qvec, notes)
    evidence.sort(key=lambda e: -e.score)
    evidence = evidence[: limit * 2]

    text: str | None = None
    kind: Literal["generated", "extractive"] | None = None
    cited: list[str] = []
    if not answer:
        status = "no answer requested (answer=false): returning the ranked evidence only"
    elif llm is None or not hasattr(llm, "generate"):
        status = "no language model is available in this server: returning the ranked evidence only"
    elif not evidence:
        status = "nothing relevant was found, so no answer was generated"
    else:
        try:
            result = await llm.generate(
                build_prompt(query, evidence),
                max_new_tokens=rag.settings.answer_max_tokens,
                stop=await _stops_for(llm),
            )
            raw = str(_attr(result, "text", result)).strip()
            model = _attr(result, "model_id", None)
            text, cited, copied = check_citations(raw, evidence)
            kind = "generated"
            status = f"answered by {model}" if model else "answered by the local language model"
            if not text or not cited or copied:
                why = "copied the prompt" if copied else "cited no evidence" if text else "was empty"
                text, cited = await extractive_answer(rag, query, evidence)
                kind = "extractive"
                status = f"the model's answer {why}; the best evidence sentences are returned instead"
                text = text or None
        except McpGemmaError as exc:
            status = f"the language model failed ({exc}): returning the ranked evidence only"
    return ResearchReport(
        query=query,
        answer=text,
        answer_kind=kind,
        cited=cited,
        answer_status=status,
        evidence=evidence,
        notes=notes,
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )
