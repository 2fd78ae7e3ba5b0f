"""The files under a folder that a glob names, without ever following a link out of the allowed roots.

``Path.glob`` follows symbolic links to folders wherever a pattern component is not ``**``, so a
link to ``/etc`` in a root let ``*/*`` list ``/etc``; and a malformed pattern is a bare
``ValueError``. Here the folder is walked by hand: a link is followed only when its real path
lies inside an allowed root (each real folder once, so link cycles end), a link out of the roots
is reported by its own name, never by what it points at, and the pattern is checked and bounded
before the walk (each component is matched on its own, so a ``*`` never crosses a ``/``).
As in a shell, an entry whose name starts with ``.`` (``.git``, ``.venv``) is matched only by a
pattern component that starts with ``.`` too; one passed over that way is reported, not read.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.rag.sniff import SkippedPath

MAX_GLOB_CHARS = 256
MAX_GLOB_RECURSIVE = 3
MAX_GLOB_WILDCARDS = 16
MAX_WALK_ENTRIES = 1_000_000


def inside(path: Path, roots: Sequence[Path]) -> Path | None:
    """The allowed root ``path`` lies in, or None."""
    for root in roots:
        if path == root or path.is_relative_to(root):
            return root
    return None


class Glob:
    """A checked glob: which relative paths it names, and which folders may hold some."""

    def __init__(self, segments: Sequence[str], *, hidden: bool = False) -> None:
        # fnmatch's translation does not backtrack on repeated '*'; a component never holds '/'.
        self._raw = list(segments)
        self._segments: list[re.Pattern[str] | None] = [
            None if seg == "**" else re.compile(fnmatch.translate(seg)) for seg in segments
        ]
        # Which components may match a name starting with '.': all, or those that start with one.
        self._dot = [hidden or seg.startswith(".") for seg in segments]

    def with_hidden(self) -> Glob:
        """The same pattern, matching hidden names everywhere (to tell what it passed over)."""
        return Glob(self._raw, hidden=True)

    def _fits(self, i: int, part: str) -> bool:
        regex = self._segments[i]
        ok = regex is None or regex.match(part) is not None
        return ok and (self._dot[i] or not part.startswith("."))

    def matches(self, parts: Sequence[str]) -> bool:
        """Whether the file at these relative path components is named by the pattern."""
        segments = self._segments

        @functools.cache
        def match(i: int, j: int) -> bool:
            if i == len(segments):
                return j == len(parts)
            if segments[i] is None:  # '**': zero or more folders; a trailing one, any file below
                if i == len(segments) - 1:
                    return j < len(parts) and all(self._fits(i, p) for p in parts[j:])
                return any(
                    match(i + 1, k) for k in range(j, len(parts)) if all(self._fits(i, p) for p in parts[j:k])
                )
            return j < len(parts) and self._fits(i, parts[j]) and match(i + 1, j + 1)

        return match(0, 0)

    def may_contain(self, parts: Sequence[str]) -> bool:
        """Whether a file below the folder at these components could match (else it is not walked)."""
        segments = self._segments

        @functools.cache
        def match(i: int, j: int) -> bool:
            if j == len(parts):
                return i < len(segments)  # pattern left over for what lies below
            if i == len(segments):
                return False
            if segments[i] is None:
                return (self._fits(i, parts[j]) and match(i, j + 1)) or match(i + 1, j)
            return self._fits(i, parts[j]) and match(i + 1, j + 1)

        return match(0, 0)


def compile_glob(pattern: str) -> Glob:
    """``pattern`` checked and compiled; refuses malformed or costly patterns with a clear error."""
    if len(pattern) > MAX_GLOB_CHARS:
        raise InvalidInputError(f"glob is {len(pattern)} characters; the limit is {MAX_GLOB_CHARS}")
    if "\x00" in pattern:
        raise InvalidInputError("glob contains a NUL character")
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    if not segments or pattern.startswith("/") or ".." in segments:
        raise InvalidInputError(f"glob {pattern!r} must be a non-empty relative pattern without '..'")
    for seg in segments:
        if "**" in seg and seg != "**":
            raise InvalidInputError(
                f"glob {pattern!r}: '**' can only be a whole path component, as in '**/*.md'"
            )
    recursive = sum(seg == "**" for seg in segments)
    wildcards = sum(seg.count("*") + seg.count("?") + seg.count("[") for seg in segments if seg != "**")
    if recursive > MAX_GLOB_RECURSIVE or wildcards > MAX_GLOB_WILDCARDS:
        raise InvalidInputError(
            f"glob {pattern!r} is too complex: at most {MAX_GLOB_RECURSIVE} '**' components and "
            f"{MAX_GLOB_WILDCARDS} other wildcards"
        )
    return Glob(segments)


def walk_matching(
    folder: Path, roots: Sequence[Path], glob: Glob, limit: int
) -> tuple[list[tuple[Path, Path]], list[SkippedPath]]:
    """Regular files under ``folder`` that ``glob`` names, with their root.

    Returns ``(files sorted by path, what was passed over)``; at most ``limit`` files. A hidden
    entry the glob names only when hidden names count is reported once (a folder, not its files).
    """
    files: list[tuple[Path, Path, str]] = []
    problems: list[SkippedPath] = []
    loose = glob.with_hidden()
    # Each folder carries the real paths above it: a link back to one of them is a cycle.
    stack: list[tuple[Path, tuple[str, ...], frozenset[Path]]] = [(folder, (), frozenset({folder}))]
    entries = 0
    while stack:
        directory, rel, above = stack.pop()
        try:
            with os.scandir(directory) as it:
                listing = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            problems.append(SkippedPath(str(directory), "unreadable", f"cannot list: {exc.strerror or exc}"))
            continue
        for entry in listing:
            entries += 1
            if entries > MAX_WALK_ENTRIES:
                problems.append(
                    SkippedPath(
                        str(folder),
                        "limit",
                        f"more than {MAX_WALK_ENTRIES:,} entries; the rest were not read",
                    )
                )
                return _unique(files), problems
            parts = (*rel, entry.name)
            path = Path(entry.path)
            try:
                real = path.resolve(strict=True) if entry.is_symlink() else path
                is_dir = real.is_dir()
                wanted = glob.may_contain(parts) if is_dir else glob.matches(parts)
                if not wanted:
                    if entry.name.startswith(".") and (
                        loose.may_contain(parts) if is_dir else loose.matches(parts)
                    ):
                        problems.append(
                            SkippedPath(
                                str(path),
                                "hidden",
                                f"hidden {'folder' if is_dir else 'file'} (its name starts with '.'); "
                                f"not read: name it in the glob, e.g. '{entry.name}/**', to read it",
                            )
                        )
                    continue
                if real is not path and inside(real, roots) is None:
                    problems.append(
                        SkippedPath(
                            str(path),
                            "outside_roots",
                            "a symbolic link that leads outside the allowed roots; not followed",
                        )
                    )
                    continue
                if is_dir:
                    if real not in above:
                        stack.append((real, parts, above | {real}))
                elif real.is_file():
                    root = inside(real, roots)
                    if root is not None:
                        files.append((real, root, "/".join(parts)))
                else:
                    problems.append(
                        SkippedPath(str(path), "unreadable", "not a regular file (a pipe, socket or device)")
                    )
            except (OSError, RuntimeError) as exc:  # a broken link, a loop, a permission
                problems.append(
                    SkippedPath(
                        str(path),
                        "unreadable",
                        f"cannot resolve: {getattr(exc, 'strerror', None) or exc}",
                    )
                )
                continue
            if len(files) > limit:
                problems.append(
                    SkippedPath(str(folder), "limit", f"more than {limit:,} files; the rest were not read")
                )
                return _unique(files)[:limit], problems
    return _unique(files), problems


def _unique(files: list[tuple[Path, Path, str]]) -> list[tuple[Path, Path]]:
    """Sorted by the path they were found under; a file reached twice (through a link) once."""
    seen: set[Path] = set()
    unique: list[tuple[Path, Path]] = []
    for real, root, _ in sorted(files, key=lambda f: f[2]):
        if real not in seen:
            seen.add(real)
            unique.append((real, root))
    return unique
