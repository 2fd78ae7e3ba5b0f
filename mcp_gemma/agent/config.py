"""Settings of the ReAct agent and its built-in tools."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

BrainKind = Literal["local", "client", "auto"]


class AgentSettings(BaseModel):
    """Budgets and sandbox of the server-side agent."""

    max_steps: int = Field(8, ge=1, le=100, description="Default step budget of run_agent.")
    max_steps_limit: int = Field(30, ge=1, le=100, description="Largest step budget a call may ask.")
    max_seconds: float = Field(300.0, gt=0, description="Default time budget of run_agent.")
    max_seconds_limit: float = Field(1800.0, gt=0, description="Largest time budget a call may ask.")
    brain: BrainKind = Field(
        "auto",
        description="Default brain of run_agent: the local Gemma, the client's model through MCP sampling, "
        "or auto (the client's model when the client offers sampling, else the local one).",
    )
    max_new_tokens: int = Field(256, ge=16, le=4096, description="Tokens the brain may write per step.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of the brain (0 = greedy).")
    plan: bool = Field(False, description="Ask the brain for sub-goals before the first step by default.")
    observation_chars: int = Field(
        2000, ge=100, le=100_000, description="Longest observation shown to the brain (the rest is cut)."
    )
    repeat_limit: int = Field(
        2, ge=1, le=10, description="Stop when the same tool call with the same arguments repeats this often."
    )
    enable_write_file: bool = Field(False, description="Offer write_file (allowed roots only).")
    fetch_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts fetch_url may reach ('example.org' or '*.example.org'); empty = fetch_url is off.",
    )
    allow_private_urls: bool = Field(False, description="Allow fetch_url to private or loopback addresses.")
    fetch_timeout_s: float = Field(10.0, gt=0, le=120, description="Time limit of one fetch_url call.")
    fetch_max_bytes: int = Field(1024 * 1024, ge=1, description="Bytes fetch_url reads at most.")
    search_endpoint: str | None = Field(
        None,
        description="Web search endpoint answering GET ?q=...&format=json with SearXNG-style JSON "
        "({'results': [{'title', 'url', 'content'}]}); web_search is offered only when set.",
    )
    search_timeout_s: float = Field(10.0, gt=0, le=120, description="Time limit of one web_search call.")
    max_file_bytes: int = Field(1024 * 1024, ge=1, description="Largest file read_file returns.")
    max_list_entries: int = Field(500, ge=1, le=100_000, description="Most entries list_directory returns.")
