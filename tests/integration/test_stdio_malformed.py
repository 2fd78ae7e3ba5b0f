"""Malformed lines on stdio get JSON-RPC error responses, and the session goes on (issue 17)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .conftest import server_env
from .test_transports import INIT

pytestmark = pytest.mark.anyio

PARSE = -32700
INVALID = -32600
PING = '"jsonrpc":"2.0","method":"ping"'

# (case, line sent, expected error code, expected id)
MALFORMED: list[tuple[str, bytes, int, Any]] = [
    ("truncated", b'{"jsonrpc":"2.0","id":7,"method":"ping"', PARSE, None),
    ("truncated mid-key", b'{"jsonrpc":"2.0","id":7,"meth', PARSE, None),
    ("not json", b"hello server", PARSE, None),
    ("single quotes", b"{'jsonrpc':'2.0','id':7,'method':'ping'}", PARSE, None),
    ("trailing comma", b'{"jsonrpc":"2.0","id":7,"method":"ping",}', PARSE, None),
    ("trailing garbage", b'{"jsonrpc":"2.0","id":7,"method":"ping"}}', PARSE, None),
    ("NaN id", b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}', PARSE, None),
    (
        "escaped lone surrogate",
        b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"s":"\\ud800"}}',
        PARSE,
        None,
    ),
    ("non-UTF-8 bytes", b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"s":"\xff\xfe"}}', PARSE, None),
    (
        "latin-1 text",
        '{"jsonrpc":"2.0","id":7,"method":"ping","params":{"s":"é"}}'.encode("latin-1"),
        PARSE,
        None,
    ),
    ("nesting past the parser's limit", b"[" * 5000, PARSE, None),
    ("batch array", b'[{"jsonrpc":"2.0","id":7,"method":"ping"}]', INVALID, None),
    ("empty array", b"[]", INVALID, None),
    ("number", b"42", INVALID, None),
    ("string", b'"ping"', INVALID, None),
    ("null", b"null", INVALID, None),
    ("empty object", b"{}", INVALID, None),
    ("missing jsonrpc", b'{"id":8,"method":"ping"}', INVALID, 8),
    ("jsonrpc 1.0", b'{"jsonrpc":"1.0","id":8,"method":"ping"}', INVALID, 8),
    ("jsonrpc as number", b'{"jsonrpc":2.0,"id":"eight","method":"ping"}', INVALID, "eight"),
    ("float id", b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID, None),
    ("integral float id", b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}', INVALID, None),
    ("bool id", b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID, None),
    ("null id", b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID, None),
    ("object id", b'{"jsonrpc":"2.0","id":{"n":1},"method":"ping"}', INVALID, None),
    ("params string", b'{"jsonrpc":"2.0","id":9,"method":"ping","params":"x"}', INVALID, 9),
    ("params array", b'{"jsonrpc":"2.0","id":9,"method":"ping","params":[1,2]}', INVALID, 9),
    ("params number", b'{"jsonrpc":"2.0","id":9,"method":"ping","params":5}', INVALID, 9),
    ("method number", b'{"jsonrpc":"2.0","id":10,"method":42}', INVALID, 10),
    ("notification with bad method", b'{"jsonrpc":"2.0","method":null}', INVALID, None),
    ("id only", b'{"jsonrpc":"2.0","id":11}', INVALID, 11),
    (
        "result and error",
        b'{"jsonrpc":"2.0","id":12,"result":{},"error":{"code":1,"message":"x"}}',
        INVALID,
        12,
    ),
    ("error not an object", b'{"jsonrpc":"2.0","id":13,"error":"boom"}', INVALID, 13),
    ("result not an object", b'{"jsonrpc":"2.0","id":14,"result":5}', INVALID, 14),
]


class _Wire:
    """Line-level access to a spawned stdio server."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._out = BufferedByteReceiveStream(process.stdout)

    async def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(line + b"\n")

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(30):
            line = await self._out.receive_until(b"\n", 1 << 20)
        message: dict[str, Any] = json.loads(line)
        return message


async def test_stdio_answers_every_malformed_line_and_keeps_serving(tmp_path: Path) -> None:
    log = (tmp_path / "stderr.log").open("wb")
    process = await anyio.open_process(
        [sys.executable, "-m", "mcp_gemma", "serve", "--transport", "stdio"],
        env=server_env(tmp_path / "data"),
        stderr=log,
    )
    with log:
        async with process:
            wire = _Wire(process)
            await wire.send(json.dumps(INIT).encode())
            assert (await wire.receive())["id"] == 1
            await wire.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
            got: dict[str, tuple[int, Any]] = {}
            for case, line, _, _ in MALFORMED:
                await wire.send(line)
                answer = await wire.receive()
                assert answer["jsonrpc"] == "2.0" and set(answer) == {"jsonrpc", "id", "error"}, (
                    case,
                    answer,
                )
                prefix = "Parse error: " if answer["error"]["code"] == PARSE else "Invalid request: "
                assert answer["error"]["message"].startswith(prefix), (case, answer)
                got[case] = (answer["error"]["code"], answer["id"])
            assert got == {case: (code, request_id) for case, _, code, request_id in MALFORMED}
            # A blank line is no message and gets no answer; the next valid request is answered.
            await wire.send(b"")
            await wire.send(b"{" + PING.encode() + b',"id":"p"}')
            assert await wire.receive() == {"jsonrpc": "2.0", "id": "p", "result": {}}
            await wire.send(b'{"jsonrpc":"2.0","id":"after","method":"tools/list"}')
            tools = await wire.receive()
            assert tools["id"] == "after" and any(
                t["name"] == "health_check" for t in tools["result"]["tools"]
            )
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(60):
                assert await process.wait() == 0
