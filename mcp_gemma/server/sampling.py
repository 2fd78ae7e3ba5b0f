"""The client's model through MCP sampling: the :class:`~mcp_gemma.llm.sampling.Sampler` that both
``reason`` and ``run_agent`` use.

On handshake-era connections (≤ 2025-11-25) the server sends ``sampling/createMessage`` mid-call.
On 2026-07-28+ connections the server may not send requests, so :meth:`ClientSampler.sample` raises
:class:`~mcp_gemma.llm.sampling.SamplingRequired`; the tool answers with an ``InputRequiredResult``
and, when the client retries with the model's reply, finds it among the call's input responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp_types import (
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ErrorData,
    ModelHint,
    ModelPreferences,
    SamplingCapability,
    SamplingMessage,
    TextContent,
)

from mcp_gemma.errors import McpGemmaError, ModelUnavailableError
from mcp_gemma.llm.sampling import SampledReply, SamplingRequest, SamplingRequired


def client_supports_sampling(session: Any) -> bool:
    """Whether the connected client declared the sampling capability."""
    try:
        return bool(session.check_client_capability(ClientCapabilities(sampling=SamplingCapability())))
    except Exception:  # a session without capability data: treat as no sampling
        return False


def sampling_request(request: SamplingRequest) -> CreateMessageRequest:
    """The ``sampling/createMessage`` request for one call."""
    preferences = None
    if request.model_hint is not None:
        preferences = ModelPreferences(
            hints=[ModelHint(name=request.model_hint)], intelligence_priority=0.5, speed_priority=0.5
        )
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[
                SamplingMessage(role=role, content=TextContent(type="text", text=text))
                for role, text in request.messages
            ],
            system_prompt=request.system,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop_sequences=list(request.stop) or None,
            model_preferences=preferences,
        )
    )


def sampled_text(result: Any) -> str:
    """The text of a sampling result (``CreateMessageResult`` or its dict form)."""
    if isinstance(result, Mapping):
        result = CreateMessageResult.model_validate(result)
    content = getattr(result, "content", None)
    blocks = content if isinstance(content, list) else [content]
    texts = [b.text for b in blocks if isinstance(b, TextContent)]
    if not texts:
        raise McpGemmaError("the client's model answered without text; the agent needs text replies")
    return "".join(texts)


def sampled_reply(response: Any) -> SampledReply:
    """A client's answer to a sampling request (a result, its dict form, or the error it declined with)."""
    if isinstance(response, ErrorData):
        raise ModelUnavailableError(f"the client declined the sampling request: {response.message}")
    if isinstance(response, Mapping):
        response = CreateMessageResult.model_validate(response)
    text = sampled_text(response)
    return SampledReply(
        text=text,
        model=str(getattr(response, "model", "client")),
        stop_reason=str(getattr(response, "stop_reason", None) or "") or None,
    )


class ClientSampler:
    """The connected client's model, over one MCP session.

    ``back_channel``: whether the server may send the request mid-call (else it raises
    ``SamplingRequired``). ``responses``: the answers the client sent with a retried call, by key.
    """

    def __init__(
        self, session: Any, *, back_channel: bool, responses: Mapping[str, Any] | None = None
    ) -> None:
        self.session = session
        self.back_channel = back_channel
        self.responses = dict(responses or {})

    async def sample(self, request: SamplingRequest, *, key: str) -> SampledReply:
        if key in self.responses:
            return sampled_reply(self.responses.pop(key))
        message = sampling_request(request)
        if not self.back_channel:
            raise SamplingRequired(key, message)
        try:
            result = await self.session.send_request(message, CreateMessageResult)
        except McpGemmaError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                f"the client's model did not answer the sampling request: {exc}"
            ) from exc
        return sampled_reply(result)
