"""The audit log: one JSON line per call that changes data, in ``<data_dir>/audit.log``.

Each line says when, who (the principal), over what (stdio, streamable-http, sse, rest), which action
(the tool or route), on which ids, and how it ended (``ok`` or ``error:<ErrorClass>``). Never a token,
never document or memory text. Files are 0600 and rotate by size (``audit.log.1`` … ``.N``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from mcp_gemma.security.config import AuditSettings

logger = logging.getLogger(__name__)

MAX_IDS = 100
MAX_ID_CHARS = 256
FILE_NAME = "audit.log"


def outcome(error: BaseException | None) -> str:
    """``ok``, or ``error:<class name>`` (never the message: it may quote input)."""
    return "ok" if error is None else f"error:{type(error).__name__}"


class AuditLog:
    """Appends audit records; thread-safe, rotates by size."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def in_dir(cls, data_dir: Path, settings: AuditSettings) -> AuditLog | None:
        """The log of ``data_dir`` as ``settings`` say, or None when auditing is off."""
        if not settings.enabled:
            return None
        return cls(data_dir / FILE_NAME, max_bytes=settings.max_bytes, backups=settings.backups)

    def record(
        self,
        principal: str,
        action: str,
        ids: Iterable[str],
        result: str,
        *,
        transport: str,
    ) -> None:
        """Append one record. Failing to write is logged, never raised: the call itself went through."""
        id_list = list(ids)
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds"),
            "principal": principal,
            "transport": transport,
            "action": action,
            "ids": [str(i)[:MAX_ID_CHARS] for i in id_list[:MAX_IDS]],
            "result": result,
        }
        if len(id_list) > MAX_IDS:
            entry["ids_total"] = len(id_list)
        line = (json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
        try:
            with self._lock:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._rotate_if_needed(len(line))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as exc:
            logger.error("could not write the audit log %s: %s", self.path, exc)

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= self.max_bytes:
            return
        if self.backups == 0:
            self.path.unlink()
            return
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
