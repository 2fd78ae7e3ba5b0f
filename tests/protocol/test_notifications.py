"""Resource-update and log notifications through a real client, in both protocol eras.

Handshake era (``mode="legacy"``): ``resources/subscribe`` and ``logging/setLevel``. 2026-07-28:
``subscriptions/listen`` and the per-request log opt-in. One stdio run checks the logs where they
matter most, across a process boundary.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import LoggingMessageNotificationParams, ResourceUpdatedNotification

from mcp_gemma.server.app import create_server
from mcp_gemma.server.notify import mask_secrets
from mcp_gemma.settings import Settings

from ..integration.conftest import stdio_params

pytestmark = pytest.mark.anyio


@contextmanager
def legacy_api() -> Iterator[None]:
    """The handshake-era client calls are deprecated in this SDK; these tests use them on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        yield


class Inbox:
    """Notifications as they arrive, with a wait for the one a test expects."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._changed = anyio.Event()

    def add(self, item: str) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate_text: str) -> None:
        while not any(predicate_text in item for item in self.items):
            await self._changed.wait()

    async def wait_len(self, count: int) -> None:
        while len(self.items) < count:
            await self._changed.wait()

    async def on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.add(message.params.uri)

    async def on_log(self, params: LoggingMessageNotificationParams) -> None:
        self.add(f"{params.level} {params.logger}: {params.data}")


async def test_subscribe_gets_updates_for_changed_docs_and_tiers(settings: Settings) -> None:
    inbox = Inbox()
    agent = f"a{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(120):
        async with Client(create_server(settings), mode="legacy", message_handler=inbox.on_message) as client:
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.subscribe is True
            stored = await client.call_tool(
                "store_memory", {"content": "x", "tier": "working", "agent_id": agent}
            )
            assert stored.structured_content is not None
            item = f"memory://working/{stored.structured_content['ids'][0]}?agent_id={agent}"
            with legacy_api():
                for uri in ("doc://guide", "doc://other", f"memory://working?agent_id={agent}", item):
                    await client.subscribe_resource(uri)
                await client.unsubscribe_resource("doc://other")

            await client.call_tool("ingest_document", {"text": "Guide text.", "id": "guide"})
            await inbox.wait_for("doc://guide")
            await client.call_tool("ingest_document", {"text": "Other text.", "id": "other"})
            await client.call_tool("store_memory", {"content": "y", "tier": "working", "agent_id": agent})
            await inbox.wait_for(f"memory://working?agent_id={agent}")
            await client.call_tool("delete_document", {"id": "guide"})
            await client.call_tool("clear_memory", {"confirm": True, "tier": "working", "agent_id": agent})
            await inbox.wait_for(item)
    tier = f"memory://working?agent_id={agent}"
    assert inbox.items[:3] == ["doc://guide", tier, "doc://guide"]  # ingest, store, delete
    assert sorted(inbox.items[3:]) == sorted([tier, item])  # clear: the tier and the memory in it


async def test_a_collection_document_has_its_own_uri(settings: Settings) -> None:
    """``doc://guide?collection=team`` is another document than ``doc://guide``: its subscribers hear
    of its changes, the default one's do not."""
    inbox = Inbox()
    with anyio.fail_after(120):
        async with Client(create_server(settings), mode="legacy", message_handler=inbox.on_message) as client:
            with legacy_api():
                for uri in ("doc://guide", "doc://guide?collection=team"):
                    await client.subscribe_resource(uri)
            await client.call_tool(
                "ingest_document", {"text": "Team guide.", "id": "guide", "collection": "team"}
            )
            await inbox.wait_for("doc://guide?collection=team")
            read = await client.read_resource("doc://guide?collection=team")
            assert [getattr(c, "text", None) for c in read.contents] == ["Team guide."]
            await client.call_tool("ingest_document", {"text": "Default guide.", "id": "guide"})
            await client.call_tool("delete_document", {"id": "guide", "collection": "team"})
            await inbox.wait_len(3)
    assert inbox.items == ["doc://guide?collection=team", "doc://guide", "doc://guide?collection=team"]


async def test_listen_gets_updates_on_the_2026_protocol(settings: Settings) -> None:
    watched = ["doc://guide", "memory://semantic"]
    seen: list[str] = []
    with anyio.fail_after(120):
        async with (
            Client(create_server(settings)) as client,
            client.listen(resource_subscriptions=watched) as sub,
        ):
            await client.call_tool("ingest_document", {"text": "Guide text.", "id": "guide"})
            await client.call_tool("store_memory", {"content": "fact", "tier": "semantic"})
            async for event in sub:
                seen.append(str(getattr(event, "uri", event)))
                if len(seen) == 2:
                    break
    assert seen == ["doc://guide", "memory://semantic"]


async def test_set_level_forwards_server_logs_masked_and_filtered(settings: Settings) -> None:
    inbox = Inbox()
    log = logging.getLogger("mcp_gemma.tests")
    with anyio.fail_after(20):
        async with Client(create_server(settings), mode="legacy", logging_callback=inbox.on_log) as client:
            assert client.server_capabilities.logging is not None
            with legacy_api():
                await client.set_logging_level("info")
            await inbox.wait_for("client log level set to info")
            log.warning("connecting to redis://admin:hunter2@db:6379/0 with token=abc123 (Bearer xyz.789)")
            await inbox.wait_for("connecting to")
            with legacy_api():
                await client.set_logging_level("error")
            log.warning("below-the-level")
            log.error("marker")
            await inbox.wait_for("marker")
    masked = next(item for item in inbox.items if "connecting to" in item)
    assert (
        masked == "warning mcp_gemma.tests: connecting to redis://***@db:6379/0 with token=*** (Bearer ***)"
    )
    assert not any("below-the-level" in item for item in inbox.items)
    assert not any("hunter2" in item or "abc123" in item for item in inbox.items)


async def test_request_opt_in_sends_that_requests_logs_on_the_2026_protocol(settings: Settings) -> None:
    inbox = Inbox()
    agent = f"a{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(20):
        async with Client(create_server(settings), log_level="info", logging_callback=inbox.on_log) as client:
            await client.call_tool("store_memory", {"content": "x", "agent_id": agent})
            await inbox.wait_for(f"memory scope '{agent}': loaded")


def test_mask_secrets_covers_urls_tokens_and_given_values() -> None:
    assert mask_secrets("rediss://u:p@h/0 unix://x") == "rediss://***@h/0 unix://x"
    assert mask_secrets("password: s3cret; api_key=K") == "password: ***; api_key=***"
    assert mask_secrets("hf_abcdefghijkl") == "hf_***"
    assert mask_secrets("the auth token is tok-12345", ["tok-12345"]) == "the auth token is ***"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_server_sends_its_logs_to_the_client(
    mode: str, settings: Settings, tmp_path: Path
) -> None:
    inbox = Inbox()
    agent = f"a{uuid.uuid4().hex[:8]}"
    redis = settings.redis_url.get_secret_value() if settings.redis_url else ""
    params = stdio_params(tmp_path / "data", "--redis-url", redis)
    with anyio.fail_after(120):
        async with Client(params, mode=mode, log_level="info", logging_callback=inbox.on_log) as client:
            if mode == "legacy":
                with legacy_api():
                    await client.set_logging_level("info")
                await inbox.wait_for("client log level set to info")
            result = await client.call_tool("store_memory", {"content": "x", "agent_id": agent})
            assert result.is_error is False
            await inbox.wait_for(f"memory scope '{agent}': loaded")
