"""``fetch_url`` and ``web_search`` for the agent.

Both go through :mod:`mcp_gemma.outbound_http`: the host is resolved once and the connection pinned to
the checked addresses, and redirects are followed by hand with every hop re-checked. ``fetch_url``
reads pages with the RAG page reader under the agent's own policy and limits: http(s) only, host on
``agent.fetch_allowed_hosts``, every resolved address public unless ``agent.allow_private_urls``,
size and time bounded. ``web_search`` trusts the operator's ``agent.search_endpoint`` (a local
SearXNG is the usual one), but its redirects must stay on the endpoint's host.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from mcp_gemma import outbound_http
from mcp_gemma.agent.config import AgentSettings
from mcp_gemma.agent.models import FetchResult, SearchResultItem, WebSearchResult
from mcp_gemma.errors import InvalidInputError, McpGemmaError
from mcp_gemma.outbound_http import UrlPolicy
from mcp_gemma.rag.web import read_page

__all__ = ["FetchResult", "SearchResultItem", "WebSearchResult", "fetch_url", "web_search"]

logger = logging.getLogger(__name__)

MAX_SEARCH_RESULTS = 10


def fetch_policy(agent: AgentSettings) -> UrlPolicy:
    """The URL policy fetch_url works under."""
    return UrlPolicy(
        allowed_hosts=tuple(agent.fetch_allowed_hosts),
        allow_private=agent.allow_private_urls,
        hosts_setting="agent.fetch_allowed_hosts",
        private_setting="agent.allow_private_urls",
    )


def search_policy(endpoint: str) -> UrlPolicy:
    """The endpoint's own host only, at any address: the operator chose it (often a local SearXNG)."""
    try:
        host = httpx.URL(endpoint).host
    except (httpx.InvalidURL, TypeError, ValueError):
        host = ""
    return UrlPolicy(
        allowed_hosts=(host,) if host else (),
        allow_private=True,
        hosts_setting="agent.search_endpoint: redirects must stay on its host",
        private_setting="agent.search_endpoint",
    )


async def fetch_url(url: str, agent: AgentSettings) -> FetchResult:
    """Fetch an allow-listed http(s) URL and return its visible text."""
    try:
        page = await read_page(
            url.strip(), fetch_policy(agent), max_bytes=agent.fetch_max_bytes, timeout_s=agent.fetch_timeout_s
        )
    except McpGemmaError:
        raise
    except TimeoutError:
        raise InvalidInputError(f"fetching {url} took longer than {agent.fetch_timeout_s} s") from None
    except httpx.HTTPError as exc:
        raise InvalidInputError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
    return FetchResult(
        url=url, final_url=page.url, title=page.title, text=page.text, truncated=page.truncated
    )


async def web_search(query: str, limit: int, agent: AgentSettings) -> WebSearchResult:
    """Ask the configured search endpoint; there is no fallback and no simulated result."""
    endpoint = agent.search_endpoint
    if not endpoint:
        raise InvalidInputError("web search is not configured (agent.search_endpoint)")
    try:
        url = httpx.URL(endpoint).copy_merge_params({"q": query, "format": "json"})
        fetched = await outbound_http.fetch(
            str(url),
            search_policy(endpoint),
            max_bytes=agent.fetch_max_bytes,
            timeout_s=agent.search_timeout_s,
            headers={"Accept": "application/json"},
        )
        if fetched.truncated:
            raise InvalidInputError("the search endpoint answered with more than agent.fetch_max_bytes")
        payload: Any = json.loads(fetched.body)
    except McpGemmaError:
        raise
    except TimeoutError:
        raise InvalidInputError(
            f"the search endpoint did not answer within {agent.search_timeout_s} s"
        ) from None
    except (httpx.HTTPError, ValueError) as exc:
        raise InvalidInputError(f"the search endpoint failed: {type(exc).__name__}: {exc}") from None
    raw = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(raw, list):
        raise InvalidInputError("the search endpoint's JSON has no 'results' list (SearXNG format expected)")
    items = [
        SearchResultItem(
            title=str(hit.get("title", "")),
            url=str(hit.get("url", "")),
            snippet=str(hit.get("content") or hit.get("snippet") or ""),
        )
        for hit in raw
        if isinstance(hit, dict)
    ]
    return WebSearchResult(query=query, results=items[: min(limit, MAX_SEARCH_RESULTS)])
