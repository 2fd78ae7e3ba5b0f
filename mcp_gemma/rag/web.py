"""Fetching allow-listed URLs for research_query, safely.

Only http(s) URLs whose host is on ``rag.allowed_url_hosts`` are fetched. Every address the host
resolves to must be public unless ``rag.allow_private_urls`` is set, and the connection goes to
exactly the checked addresses (:mod:`mcp_gemma.outbound_http`), so DNS rebinding cannot swap them;
redirects are followed by hand so each hop is checked and pinned the same way; the body is read in
a stream and cut at ``rag.url_max_bytes``, the whole fetch at ``rag.url_timeout_s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mcp_gemma import outbound_http
from mcp_gemma.errors import InvalidInputError
from mcp_gemma.outbound_http import UrlPolicy
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.extract import html_text

logger = logging.getLogger(__name__)


@dataclass
class FetchedPage:
    """The readable text of a fetched URL."""

    url: str
    text: str
    title: str | None
    truncated: bool


def url_policy(settings: RagSettings) -> UrlPolicy:
    """The URL policy research_query fetches under."""
    return UrlPolicy(
        allowed_hosts=tuple(settings.allowed_url_hosts),
        allow_private=settings.allow_private_urls,
        hosts_setting="rag.allowed_url_hosts",
        private_setting="rag.allow_private_urls",
    )


async def check_url(url: str, settings: RagSettings) -> str:
    """Refuse non-http(s), non-allow-listed or (unless allowed) private-address URLs."""
    await outbound_http.check_url(url, url_policy(settings))
    return url


async def fetch_page(url: str, settings: RagSettings) -> FetchedPage:
    """Fetch ``url`` within the RAG limits and return its text (HTML is reduced to visible text)."""
    return await read_page(
        url, url_policy(settings), max_bytes=settings.url_max_bytes, timeout_s=settings.url_timeout_s
    )


async def read_page(url: str, policy: UrlPolicy, *, max_bytes: int, timeout_s: float) -> FetchedPage:
    """Fetch ``url`` under ``policy`` and return its text (HTML is reduced to visible text)."""
    fetched = await outbound_http.fetch(
        url,
        policy,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        headers={"Accept": "text/html, text/plain, */*"},
    )
    try:
        raw = fetched.body.decode(fetched.charset or "utf-8", errors="replace")
    except LookupError:
        raw = fetched.body.decode("utf-8", errors="replace")
    ctype = fetched.content_type
    if "html" in ctype or raw.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        text, title = html_text(raw)
    elif ctype.startswith("text/") or "json" in ctype or not ctype:
        text, title = raw, None
    else:
        raise InvalidInputError(f"{fetched.url} returned {ctype!r}; only text and HTML pages are read")
    return FetchedPage(fetched.url, text, title, fetched.truncated)
