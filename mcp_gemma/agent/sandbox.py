"""File tools confined to ``settings.allowed_roots``.

A path is resolved first (``..`` collapsed, every symlink followed) and only then checked
against the roots, so neither ``../`` nor a symlink pointing out of a root escapes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

import anyio.to_thread
from pydantic import BaseModel, Field

from mcp_gemma.errors import AccessDeniedError, InvalidInputError, NotFoundError

BINARY_SNIFF_BYTES = 8192


class FileContent(BaseModel):
    """The text of a file under an allowed root."""

    path: str = Field(description="The resolved path that was read.")
    text: str
    bytes_read: int
    size: int = Field(description="Size of the whole file in bytes.")
    truncated: bool = Field(description="True when the file is larger than the read limit.")


class DirectoryEntry(BaseModel):
    """One entry of a directory listing."""

    name: str
    kind: Literal["file", "directory", "symlink", "other"]
    size: int | None = Field(None, description="Bytes, for regular files.")


class DirectoryListing(BaseModel):
    """The entries of a directory under an allowed root, sorted by name."""

    path: str
    entries: list[DirectoryEntry]
    truncated: bool = Field(description="True when there were more entries than the listing limit.")


class WriteReport(BaseModel):
    """What write_file wrote."""

    path: str
    bytes_written: int
    created: bool = Field(description="False when an existing file was overwritten.")


def resolve_in_roots(path: str, roots: list[Path]) -> Path:
    """The real path of ``path`` if it lies inside one of ``roots``; else :class:`AccessDeniedError`.

    Relative paths are taken relative to the first root.
    """
    if not roots:
        raise AccessDeniedError(
            "no allowed roots are configured (set MCP_GEMMA_ALLOWED_ROOTS); file access is off"
        )
    if not path or "\x00" in path:
        raise InvalidInputError("the path is empty or contains a NUL character")
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    try:
        real = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise AccessDeniedError(f"cannot resolve {path!r}: {exc}") from None
    for root in roots:
        if real == root or real.is_relative_to(root):
            return real
    shown = ", ".join(str(r) for r in roots)
    raise AccessDeniedError(
        f"{path!r} is outside the allowed roots ({shown}) once '..' and symlinks are resolved; "
        "only files under those folders are accessible"
    )


def _read(real: Path, limit: int, shown: str) -> FileContent:
    try:
        # O_NONBLOCK: a FIFO planted under a root must not hang the server (fstat refuses it below).
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFoundError(
            f"{shown!r} does not exist; use agent_list_directory to see what is there"
        ) from None
    except IsADirectoryError:
        raise InvalidInputError(f"{shown!r} is a directory; use agent_list_directory") from None
    except OSError as exc:
        raise AccessDeniedError(f"cannot open {shown!r}: {exc.strerror}") from None
    # The descriptor is checked before a file object owns it (fdopen refuses a directory and
    # would leave it open), and closed here on every refusal.
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidInputError(f"{shown!r} is a directory; use agent_list_directory")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"{shown!r} is not a regular file")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        data = fh.read(limit + 1)
    truncated = len(data) > limit
    data = data[:limit]
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise InvalidInputError(f"{real} looks binary; read_file returns text files only")
    return FileContent(
        path=str(real),
        text=data.decode("utf-8", errors="replace"),
        bytes_read=len(data),
        size=info.st_size,
        truncated=truncated,
    )


async def read_file(path: str, roots: list[Path], limit: int) -> FileContent:
    """Read up to ``limit`` bytes of a text file under the allowed roots."""
    real = resolve_in_roots(path, roots)
    return await anyio.to_thread.run_sync(_read, real, limit, path)


def _list(real: Path, limit: int) -> DirectoryListing:
    if not real.exists():
        raise NotFoundError(f"{real} does not exist")
    if not real.is_dir():
        raise InvalidInputError(f"{real} is not a directory; use read_file")
    entries: list[DirectoryEntry] = []
    truncated = False
    with os.scandir(real) as it:
        for item in sorted(it, key=lambda e: e.name):
            if len(entries) >= limit:
                truncated = True
                break
            kind: Literal["file", "directory", "symlink", "other"]
            size = None
            if item.is_symlink():
                kind = "symlink"
            elif item.is_dir(follow_symlinks=False):
                kind = "directory"
            elif item.is_file(follow_symlinks=False):
                kind, size = "file", item.stat(follow_symlinks=False).st_size
            else:
                kind = "other"
            entries.append(DirectoryEntry(name=item.name, kind=kind, size=size))
    return DirectoryListing(path=str(real), entries=entries, truncated=truncated)


async def list_directory(path: str, roots: list[Path], limit: int) -> DirectoryListing:
    """List a directory under the allowed roots (symlinks are shown, not followed)."""
    real = resolve_in_roots(path, roots)
    return await anyio.to_thread.run_sync(_list, real, limit)


def _write(real: Path, content: str, overwrite: bool) -> WriteReport:
    data = content.encode("utf-8")
    existed = real.exists()
    if existed and not overwrite:
        raise InvalidInputError(f"{real} exists; pass overwrite=true to replace it")
    if real.is_dir():
        raise InvalidInputError(f"{real} is a directory")
    real.parent.mkdir(parents=True, exist_ok=True)
    if existed and not real.is_file():
        raise InvalidInputError(f"{real} is not a regular file")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags, 0o644)
    except OSError as exc:
        raise AccessDeniedError(f"cannot write {real}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInputError(f"{real} is not a regular file")
        fh = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        fh.truncate(0)
        fh.write(data)
    return WriteReport(path=str(real), bytes_written=len(data), created=not existed)


async def write_file(
    path: str, content: str, roots: list[Path], limit: int, *, overwrite: bool
) -> WriteReport:
    """Write a UTF-8 text file under the allowed roots."""
    if len(content.encode("utf-8")) > limit:
        raise InvalidInputError(f"the content is larger than {limit} bytes (agent.max_file_bytes)")
    real = resolve_in_roots(path, roots)
    return await anyio.to_thread.run_sync(_write, real, content, overwrite)
