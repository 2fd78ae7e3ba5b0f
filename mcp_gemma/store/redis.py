"""Redis access: one asyncio connection pool to the embedded server, an external one, or a cluster."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

import anyio
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from mcp_gemma.errors import StoreUnavailableError
from mcp_gemma.settings import Settings, mask_url
from mcp_gemma.store.embedded import EmbeddedRedis, client_name
from mcp_gemma.store.keys import Keys
from mcp_gemma.store.migrate import ensure_layout

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
StoreKind = Literal["embedded", "external", "cluster"]
AnyRedis = aioredis.Redis | RedisCluster


def describe_redis_error(exc: BaseException, where: str, embedded: EmbeddedRedis | None = None) -> str:
    """A message that says what went wrong with Redis and what to check."""
    text = str(exc)
    if embedded is not None and isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError):
        return (
            f"the embedded Redis ({embedded.socket}) is not answering: it is being restarted, retry in a few "
            f"seconds; if this persists see {embedded.logfile}"
            + (f" (last restart attempt: {embedded.last_error})" if embedded.last_error else "")
        )
    if "NOAUTH" in text or "Authentication required" in text:
        return f"Redis at {where} requires a password: put it in REDIS_URL (redis://:PASSWORD@host:port)"
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError):
        return f"Redis at {where} refused authentication: check the password / user in REDIS_URL"
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return f"Redis at {where} did not answer in time: check that it is running and reachable"
    if isinstance(exc, rexc.ConnectionError | OSError):
        return (
            f"cannot connect to Redis at {where}: {exc}. Start it, or unset REDIS_URL to use the embedded one"
        )
    return f"Redis at {where} failed: {exc}"


def _embedded_of(args: tuple[object, ...]) -> EmbeddedRedis | None:
    """The embedded server behind a guarded call: its first argument is the store, or holds it."""
    if not args:
        return None
    first = args[0]
    for candidate in (first, getattr(first, "store", None), getattr(first, "redis", None)):
        if isinstance(candidate, RedisStore):
            return candidate.embedded
    return None


def redis_guard(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn Redis failures inside a service method into :class:`StoreUnavailableError`."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (rexc.RedisError, OSError) as exc:
            if isinstance(exc, rexc.ResponseError) and "NOAUTH" not in str(exc):
                raise StoreUnavailableError(f"Redis rejected a command: {exc}") from exc
            message = describe_redis_error(exc, "the configured server", _embedded_of(args))
            raise StoreUnavailableError(message) from exc

    return wrapper


class RedisStore:
    """The server's one Redis connection pool and what it needs to know about it."""

    def __init__(
        self, client: AnyRedis, keys: Keys, kind: StoreKind, where: str, embedded: EmbeddedRedis | None
    ) -> None:
        self.client = client
        self.keys = keys
        self.kind = kind
        self.where = where
        self.embedded = embedded
        self._version: str | None = None

    @property
    def generation(self) -> int:
        """Changes when the embedded server was restarted: in-process indexes built before reload."""
        return self.embedded.restarts if self.embedded is not None else 0

    @classmethod
    async def open(cls, settings: Settings) -> RedisStore:
        """Connect (starting the embedded server when no URL is set) and check the server answers."""
        keys = Keys(settings.namespace)
        timeout = settings.redis_timeout_s
        common: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "client_name": client_name(),
            "health_check_interval": 30,
        }
        embedded: EmbeddedRedis | None = None
        client: AnyRedis
        if settings.redis_url is None:
            cfg = settings.embedded_redis
            embedded = EmbeddedRedis(
                settings.data_dir,
                appendfsync=cfg.appendfsync,
                start_timeout_s=cfg.start_timeout_s,
                maxmemory_mb=cfg.maxmemory_mb,
            )
            await anyio.to_thread.run_sync(embedded.start)
            embedded.supervise(cfg.watch_interval_s)
            client = aioredis.Redis(unix_socket_path=str(embedded.socket), **common)
            kind: StoreKind = "embedded"
            where = str(embedded.socket)
        else:
            url = settings.redis_url.get_secret_value()
            where = mask_url(url)
            if url.startswith(("redis+cluster://", "rediss+cluster://")):
                real = url.replace("+cluster", "", 1)
                common.pop("health_check_interval")
                client = RedisCluster.from_url(real, **common)
                kind = "cluster"
            else:
                try:
                    client = aioredis.Redis.from_url(url, **common)
                except ValueError as exc:
                    raise StoreUnavailableError(f"REDIS_URL {where} is not a valid Redis URL: {exc}") from exc
                kind = "external"
        store = cls(client, keys, kind, where, embedded)
        try:
            with anyio.fail_after(timeout + 1):
                await client.ping()
        except (rexc.RedisError, OSError, TimeoutError) as exc:
            await store.close(release=False)
            raise StoreUnavailableError(describe_redis_error(exc, where, embedded)) from exc
        logger.info("connected to %s Redis at %s", kind, where)
        try:
            await ensure_layout(client, keys)
        except (rexc.RedisError, OSError) as exc:
            await store.close(release=False)
            raise StoreUnavailableError(describe_redis_error(exc, where, embedded)) from exc
        except BaseException:
            await store.close(release=False)
            raise
        return store

    @redis_guard
    async def ping_ms(self) -> float:
        """Round-trip time of one PING, in milliseconds."""
        start = time.perf_counter()
        await self.client.ping()
        return (time.perf_counter() - start) * 1000

    @redis_guard
    async def server_version(self) -> str:
        """``redis_version`` (or ``valkey_version``) reported by INFO; asked once, then remembered
        (``health_check`` reads it on every call, and INFO is the costliest reply to parse)."""
        if self._version is not None:
            return self._version
        info: dict[str, Any] = await self.client.info("server")
        if self.kind == "cluster":
            info = next(iter(info.values())) if info and isinstance(next(iter(info.values())), dict) else info
        version = info.get("valkey_version") or info.get("redis_version") or "unknown"
        self._version = f"{'valkey' if 'valkey_version' in info else 'redis'} {version}"
        return self._version

    @redis_guard
    async def info(self) -> dict[str, Any]:
        """INFO of the server (of the first node on a cluster)."""
        info: dict[str, Any] = await self.client.info()
        if self.kind == "cluster" and info and isinstance(next(iter(info.values())), dict):
            info = next(iter(info.values()))
        return info

    async def close(self, *, release: bool = True) -> None:
        """Close the pool; shut the embedded server down when no other process uses it."""
        try:
            await self.client.aclose()
        except (rexc.RedisError, OSError) as exc:
            logger.debug("closing the Redis pool: %s", exc)
        if self.embedded is not None:
            done = self.embedded.release if release else self.embedded.stop_supervising
            await anyio.to_thread.run_sync(done)
