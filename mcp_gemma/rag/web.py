"""Fetching allow-listed URLs for research_query, safely.

Only http(s) URLs whose host is on ``rag.allowed_url_hosts`` are fetched. Every address the host
resolves to must be public unless ``rag.allow_private_urls`` is set; redirects are followed by
hand so each hop is checked the same way; the body is read in a stream and cut at
``rag.url_max_bytes``, the whole fetch at ``rag.url_timeout_s``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from mcp_gemma.errors import AccessDeniedError, InvalidInputError
from mcp_gemma.rag.config import RagSettings
from mcp_gemma.rag.extract import html_text

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5


@dataclass
class FetchedPage:
    """The readable text of a fetched URL."""

    url: str
    text: str
    title: str | None
    truncated: bool


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Exact host match, or a ``*.example.org`` pattern matching the domain and its subdomains."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pat = pattern.lower().rstrip(".")
        if pat.startswith("*."):
            base = pat[2:]
            if host == base or host.endswith("." + base):
                return True
        elif host == pat:
            return True
    return False


async def check_url(url: str, settings: RagSettings) -> str:
    """Refuse non-http(s), non-allow-listed or (unless allowed) private-address URLs."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"{url!r} is not an http(s) URL with a host")
    host = parts.hostname
    if not host_allowed(host, settings.allowed_url_hosts):
        allowed = ", ".join(settings.allowed_url_hosts) or "none configured (rag.allowed_url_hosts)"
        raise AccessDeniedError(f"host {host!r} is not on the URL allow-list; allowed: {allowed}")
    if settings.allow_private_urls:
        return url
    try:
        infos = await anyio.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise InvalidInputError(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise AccessDeniedError(
                f"{host!r} resolves to {address}, a private, loopback or reserved address; refused "
                "(set rag.allow_private_urls to allow it)"
            )
    return url


async def fetch_page(url: str, settings: RagSettings) -> FetchedPage:
    """Fetch ``url`` within the limits and return its text (HTML is reduced to visible text)."""
    limit = settings.url_max_bytes
    with anyio.fail_after(settings.url_timeout_s):
        async with httpx.AsyncClient(follow_redirects=False, timeout=settings.url_timeout_s) as client:
            current = url
            for _hop in range(MAX_REDIRECTS + 1):
                await check_url(current, settings)
                async with client.stream(
                    "GET", current, headers={"Accept": "text/html, text/plain, */*"}
                ) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise InvalidInputError(f"{current} redirects without a Location header")
                        current = urljoin(current, location)
                        continue
                    if resp.status_code >= 400:
                        raise InvalidInputError(f"{current} answered HTTP {resp.status_code}")
                    body = bytearray()
                    truncated = False
                    async for part in resp.aiter_bytes():
                        body.extend(part)
                        if len(body) > limit:
                            del body[limit:]
                            truncated = True
                            break
                    ctype = resp.headers.get("content-type", "").lower()
                    charset = resp.charset_encoding or "utf-8"
                    break
            else:
                raise InvalidInputError(f"{url} redirected more than {MAX_REDIRECTS} times")
    try:
        raw = bytes(body).decode(charset, errors="replace")
    except LookupError:
        raw = bytes(body).decode("utf-8", errors="replace")
    if "html" in ctype or raw.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        text, title = html_text(raw)
    elif ctype.startswith("text/") or "json" in ctype or not ctype:
        text, title = raw, None
    else:
        raise InvalidInputError(f"{current} returned {ctype!r}; only text and HTML pages are read")
    return FetchedPage(current, text, title, truncated)
