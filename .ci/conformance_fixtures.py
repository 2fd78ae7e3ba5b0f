"""The fixtures of the MCP conformance suite's server scenarios, as an mcp-gemma server plugin.

Not part of the product: `.ci/conformance` starts `serve` with this module on ``PYTHONPATH`` and in
``MCP_GEMMA_SERVER__PLUGINS``. It implements what the scenarios of
``@modelcontextprotocol/conformance`` call (the reference server's ``test_*`` tools, ``test://``
resources, ``test_*`` prompts and their completions) with the SDK's own features: image, audio and
embedded-resource content, log records and progress notifications during a call, and sampling and
elicitation requests back to the client. Every tool is declared read-only (none changes data), so
mcp-gemma's access rules let any principal call it and its audit log stays out of the way.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import wave
import zlib
from collections.abc import Mapping
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    AudioContent,
    ContentBlock,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    EmbeddedResource,
    ImageContent,
    SamplingMessage,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)
from pydantic import BaseModel, Field

from mcp_gemma.errors import McpGemmaError
from mcp_gemma.server.completion import add_completions
from mcp_gemma.settings import Settings
from mcp_gemma.state import AppState

logger = logging.getLogger(__name__)

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _png_1x1_red() -> bytes:
    """A valid 1x1 red PNG, built with zlib (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A valid WAV file: 10 ms of 8 kHz mono 16-bit silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return buffer.getvalue()


PNG = _png_1x1_red()
PNG_B64 = base64.b64encode(PNG).decode("ascii")
WAV_B64 = base64.b64encode(_wav_silence()).decode("ascii")


def _image() -> ImageContent:
    return ImageContent(type="image", data=PNG_B64, mime_type="image/png")


def _embedded(uri: str, text: str) -> EmbeddedResource:
    return EmbeddedResource(
        type="resource", resource=TextResourceContents(uri=uri, mime_type="text/plain", text=text)
    )


class UserInfo(BaseModel):
    """What ``test_elicitation`` asks the user for."""

    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}

SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


def _tools(server: MCPServer[AppState]) -> None:
    @server.tool(annotations=READ_ONLY)
    def test_simple_text() -> str:
        """Return a simple text response."""
        return "This is a simple text response for testing."

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def test_image_content() -> list[ContentBlock]:
        """Return a 1x1 red PNG image."""
        return [_image()]

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def test_audio_content() -> list[ContentBlock]:
        """Return a short WAV clip."""
        return [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def test_embedded_resource() -> list[ContentBlock]:
        """Return an embedded text resource."""
        return [_embedded("test://embedded-resource", "This is an embedded resource content.")]

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def test_multiple_content_types() -> list[ContentBlock]:
        """Return text, an image and an embedded resource."""
        return [
            TextContent(type="text", text="Multiple content types test:"),
            _image(),
            _embedded("test://mixed-content-resource", json.dumps({"test": "data", "value": 123})),
        ]

    @server.tool(annotations=READ_ONLY)
    async def test_tool_with_logging() -> str:
        """Log three records during the call (they reach clients that set a log level)."""
        logger.info("Tool execution started")
        await anyio.sleep(0.05)
        logger.info("Tool processing data")
        await anyio.sleep(0.05)
        logger.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @server.tool(annotations=READ_ONLY)
    async def test_tool_with_progress(ctx: Context[AppState]) -> str:
        """Report progress 0, 50 and 100 of 100."""
        for done in (0, 50, 100):
            await ctx.report_progress(done, 100, f"Completed step {done} of 100")
            await anyio.sleep(0.05)
        return "Progress tool completed"

    @server.tool(annotations=READ_ONLY)
    def test_error_handling() -> str:
        """Always fail, as a tool error with a message."""
        raise McpGemmaError("This tool intentionally returns an error for testing")

    @server.tool(annotations=READ_ONLY)
    async def test_sampling(
        ctx: Context[AppState],
        prompt: Annotated[
            str, Field(max_length=10_000, description="The prompt to send to the client's model.")
        ],
    ) -> str:
        """Ask the client's model (sampling) and return its answer."""
        request = CreateMessageRequest(
            params=CreateMessageRequestParams(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                max_tokens=100,
            )
        )
        result = await ctx.session.send_request(
            request, CreateMessageResult, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
        )
        text = result.content.text if isinstance(result.content, TextContent) else "(no text)"
        return f"LLM response: {text}"

    @server.tool(annotations=READ_ONLY)
    async def test_elicitation(
        ctx: Context[AppState],
        message: Annotated[str, Field(max_length=10_000, description="What to ask the user.")],
    ) -> str:
        """Ask the user (elicitation) for a username and an email address."""
        answer = await ctx.elicit(message, UserInfo)
        data = answer.data.model_dump() if answer.action == "accept" else None
        return f"User response: action={answer.action}, content={json.dumps(data)}"

    @server.tool(annotations=READ_ONLY)
    async def test_elicitation_sep1034_defaults(ctx: Context[AppState]) -> str:
        """Elicit a form whose fields carry default values (SEP-1034)."""
        answer = await ctx.session.elicit_form(
            "Please review and update the form fields with defaults",
            SEP1034_SCHEMA,
            related_request_id=ctx.request_id,
        )
        return f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"

    @server.tool(annotations=READ_ONLY)
    async def test_elicitation_sep1330_enums(ctx: Context[AppState]) -> str:
        """Elicit a form with every enum schema form (SEP-1330)."""
        answer = await ctx.session.elicit_form(
            "Please select options from the enum fields", SEP1330_SCHEMA, related_request_id=ctx.request_id
        )
        return f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"


def _resources(server: MCPServer[AppState]) -> None:
    @server.resource("test://static-text", name="static_text", mime_type="text/plain")
    def static_text() -> str:
        """A static text resource."""
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static_binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static binary resource (a PNG image)."""
        return PNG

    @server.resource("test://template/{id}/data", name="template_data", mime_type="application/json")
    def template_data(id: str) -> str:
        """Data for one id (a resource template)."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource", name="watched_resource", mime_type="text/plain")
    def watched_resource() -> str:
        """A resource to subscribe to."""
        return "Watched resource content"


def _prompts(server: MCPServer[AppState]) -> None:
    @server.prompt()
    def test_simple_prompt() -> list[Message]:
        """A prompt without arguments."""
        return [UserMessage("This is a simple prompt for testing.")]

    @server.prompt()
    def test_prompt_with_arguments(
        arg1: Annotated[str, Field(max_length=1000, description="First test argument")],
        arg2: Annotated[str, Field(max_length=1000, description="Second test argument")],
    ) -> list[Message]:
        """A prompt with two required arguments."""
        return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]

    @server.prompt()
    def test_prompt_with_embedded_resource(
        resourceUri: Annotated[str, Field(max_length=2000, description="URI of the resource to embed")],
    ) -> list[Message]:
        """A prompt that embeds a resource."""
        return [
            UserMessage(_embedded(resourceUri, "Embedded resource content for testing.")),
            UserMessage("Please process the embedded resource above."),
        ]

    @server.prompt()
    def test_prompt_with_image() -> list[Message]:
        """A prompt with an image."""
        return [UserMessage(_image()), UserMessage("Please analyze the image above.")]


def _completions(server: MCPServer[AppState]) -> None:
    def source(values: list[str]) -> Any:
        async def complete(state: AppState, prefix: str, context: Mapping[str, str]) -> list[str]:
            return values

        return complete

    add_completions(
        server,
        "ref/prompt",
        "test_prompt_with_arguments",
        {"arg1": source(["paris", "park", "party", "test", "testValue1"]), "arg2": source(["testValue2"])},
    )
    add_completions(
        server, "ref/resource", "test://template/{id}/data", {"id": source(["123", "124", "999"])}
    )


def register(server: MCPServer[AppState], settings: Settings) -> None:
    """Add the conformance suite's fixture tools, resources, prompts and completions."""
    _tools(server)
    _resources(server)
    _prompts(server)
    _completions(server)
