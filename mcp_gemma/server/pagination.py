"""Cursor paging of the ``*/list`` requests: an opaque cursor that encodes the offset of the next page."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

T = TypeVar("T")

_PREFIX = "mcpg:"


def encode_cursor(offset: int) -> str:
    """The cursor that resumes a listing at ``offset``."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """The offset a cursor from :func:`encode_cursor` stands for; ``None`` is the first page.

    Raises an invalid-params error (-32602) for a cursor this server did not hand out.
    """
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        offset = int(text.removeprefix(_PREFIX))
        if offset < 0:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeError):
        raise MCPError(
            code=INVALID_PARAMS, message="invalid cursor: pass back a nextCursor unchanged"
        ) from None
    return offset


def page(items: Sequence[T], cursor: str | None, size: int) -> tuple[list[T], str | None]:
    """One page of ``items`` from ``cursor``, and the cursor of the next page (``None`` on the last)."""
    start = decode_cursor(cursor)
    end = start + size
    return list(items[start:end]), encode_cursor(end) if end < len(items) else None
