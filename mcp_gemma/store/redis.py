"""Redis access: one asyncio connection pool to the embedded server, an external one, or a cluster.

On a cluster, a service call that meets a moving slot or a failed master (connection refused,
CLUSTERDOWN, TRYAGAIN, a demoted master's READONLY) is run again, with backoff, until a replica has
taken over or ``redis_failover_wait_s`` has passed; then it reports the cluster unavailable. Every
write of a service call is idempotent on a re-run (documents by content hash, transactions WATCHed).
With ``redis_min_replicas_ack``, writes wait (WAIT) for that many replicas before they count as done.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

import anyio
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster

from mcp_gemma.errors import QuotaExceededError, StoreUnavailableError
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


def _store_of(args: tuple[object, ...]) -> RedisStore | None:
    """The store behind a guarded call: its first argument is the store, or holds it."""
    if not args:
        return None
    first = args[0]
    for candidate in (first, getattr(first, "store", None), getattr(first, "redis", None)):
        if isinstance(candidate, RedisStore):
            return candidate
    return None


FULL_MESSAGE = (
    "the Redis server is full (its maxmemory is reached): this write was refused and nothing stored was "
    "dropped; raise embedded_redis.maxmemory_mb (or the external server's maxmemory), or delete "
    "documents / clear memories"
)


def _embedded_of(args: tuple[object, ...]) -> EmbeddedRedis | None:
    """The embedded server behind a guarded call, if that is what it uses."""
    store = _store_of(args)
    return store.embedded if store is not None else None


# What a cluster answers while a slot moves or a failed master's replica takes over.
TRANSIENT_CLUSTER_ERRORS: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.SlotNotCoveredError,
    rexc.ClusterError,
    rexc.MovedError,
    rexc.AskError,
    OSError,
)
_guarded = contextvars.ContextVar("redis_guarded", default=False)
_call = contextvars.ContextVar("redis_call", default=(0, 0))
_calls = itertools.count(1)


def current_call() -> tuple[int, int]:
    """``(call, attempt)``: an id of the outermost guarded call in progress, the same across its
    re-runs (0: none), and which run of it this is (0, 1, …), so a re-run can recognise the writes
    of its earlier runs, which may have been applied before the failure."""
    return _call.get()


def redis_guard(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn Redis failures inside a service method into :class:`StoreUnavailableError`; on a
    cluster, first ride out a failover (the outermost guarded call re-runs, with backoff)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = _store_of(args)
        outermost = not _guarded.get()
        deadline = None
        if outermost and store is not None and store.kind == "cluster":
            deadline = time.monotonic() + store.failover_wait_s
        token = _guarded.set(True)
        call_id = next(_calls) if outermost else 0
        call_token = _call.set((call_id, 0)) if outermost else None
        try:
            delay = 0.05
            attempt = 0
            while True:
                if outermost:
                    _call.set((call_id, attempt))
                attempt += 1
                try:
                    return await fn(*args, **kwargs)
                except TRANSIENT_CLUSTER_ERRORS as exc:
                    if deadline is None or time.monotonic() + delay > deadline:
                        raise
                    logger.info("Redis Cluster is failing over or moving slots (%s); retrying", exc)
                    await anyio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
        except (rexc.RedisError, OSError) as exc:
            if not outermost:
                raise
            if isinstance(exc, rexc.OutOfMemoryError) or "OOM command not allowed" in str(exc):
                raise QuotaExceededError(FULL_MESSAGE) from exc
            transient = isinstance(exc, TRANSIENT_CLUSTER_ERRORS)
            if isinstance(exc, rexc.ResponseError) and not transient and "NOAUTH" not in str(exc):
                raise StoreUnavailableError(f"Redis rejected a command: {exc}") from exc
            if store is not None and store.kind == "cluster" and transient:
                raise StoreUnavailableError(
                    f"Redis Cluster at {store.where} is unavailable ({exc}): some slots have no reachable "
                    f"master, and none took over within redis_failover_wait_s={store.failover_wait_s:g} s; "
                    "check the nodes with CLUSTER INFO / CLUSTER NODES, the call works again once every "
                    "slot is covered"
                ) from exc
            message = describe_redis_error(exc, "the configured server", store.embedded if store else None)
            raise StoreUnavailableError(message) from exc
        finally:
            _guarded.reset(token)
            if call_token is not None:
                _call.reset(call_token)

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
        self.failover_wait_s = 0.0
        self.min_replicas_ack = 0
        self.wait_timeout_ms = 2_000
        self._node_clients: dict[str, aioredis.Redis] = {}
        self._node_options: dict[str, Any] = {}

    @property
    def generation(self) -> int:
        """Changes when the embedded server was restarted: in-process indexes built before reload."""
        return self.embedded.restarts if self.embedded is not None else 0

    def restarting_for_s(self) -> float | None:
        """Seconds since the embedded server's watcher found it gone, while it is restarting it
        (``None`` otherwise): the new server can answer before the restart is counted."""
        since = self.embedded.down_since if self.embedded is not None else None
        return None if since is None else time.monotonic() - since

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
                maxmemory_policy=cfg.maxmemory_policy,
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
        store.failover_wait_s = settings.redis_failover_wait_s
        store.min_replicas_ack = settings.redis_min_replicas_ack
        store.wait_timeout_ms = settings.redis_wait_timeout_ms
        store._node_options = {k: v for k, v in common.items() if k != "health_check_interval"}
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

    @redis_guard
    async def shared_secret(self, name: str, *, create: bool) -> str:
        """A random secret every process over this Redis and namespace agrees on: made by the first
        one that needs it (``create``: SET NX), read by the others; ``""`` when there is none yet."""
        key = self.keys.kv(f"secret:{name}")
        if create:
            await self.client.set(key, secrets.token_hex(32), nx=True)
        value = await self.client.get(key)
        if value is None:
            return await self.shared_secret(name, create=True) if create else ""
        return bytes(value).decode() if isinstance(value, bytes) else str(value)

    async def confirm_replicated(self, key: str) -> None:
        """Wait until ``redis_min_replicas_ack`` replicas hold every write made so far to the slot of
        ``key`` (a no-op when it is 0).

        WAIT counts the writes of its own connection, so it follows a write of a marker in the same
        slot on the same connection: a replica that has the marker has everything written before it.
        """
        if self.min_replicas_ack == 0:
            return
        tag = key.split("}", 1)[0] + "}" if key.startswith("{") else key
        marker = f"{tag}:wait"
        # on a cluster, a master that just took over may get its replica back (the old master
        # restarted) within the failover window: keep asking until then
        deadline = time.monotonic() + (self.failover_wait_s if self.kind == "cluster" else 0.0)
        delay = 0.1
        while True:
            acked = await self._wait_once(marker)
            if acked >= self.min_replicas_ack:
                return
            if time.monotonic() + delay > deadline:
                break
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise StoreUnavailableError(
            f"the write reached the master but only {acked} of redis_min_replicas_ack="
            f"{self.min_replicas_ack} replicas confirmed it within {self.wait_timeout_ms} ms; it may be "
            "lost if the master fails now: check the replicas (INFO replication), then retry"
        )

    async def _wait_once(self, marker: str) -> int:
        """Write ``marker`` and WAIT on the same connection; the number of replicas that confirmed."""
        client: Any = self.client
        if self.kind == "cluster":
            node = self.client.get_node_from_key(marker)  # type: ignore[union-attr]
            if node is None:
                raise rexc.SlotNotCoveredError(f"no master serves the slot of {marker!r}")
            client = self._node_clients.get(node.name)
            if client is None:
                options = dict(self._node_options)
                password = node.connection_kwargs.get("password")
                username = node.connection_kwargs.get("username")
                client = aioredis.Redis(
                    host=node.host, port=int(node.port), password=password, username=username, **options
                )
                self._node_clients[node.name] = client
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(marker)
            pipe.execute_command("WAIT", self.min_replicas_ack, self.wait_timeout_ms)
            _, acked = await pipe.execute()
        return int(acked)

    async def close(self, *, release: bool = True) -> None:
        """Close the pool; shut the embedded server down when no other process uses it."""
        for node_client in self._node_clients.values():
            try:
                await node_client.aclose()
            except (rexc.RedisError, OSError) as exc:
                logger.debug("closing a cluster node's pool: %s", exc)
        try:
            await self.client.aclose()
        except (rexc.RedisError, OSError) as exc:
            logger.debug("closing the Redis pool: %s", exc)
        if self.embedded is not None:
            done = self.embedded.release if release else self.embedded.stop_supervising
            await anyio.to_thread.run_sync(done)
