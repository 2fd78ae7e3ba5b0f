"""Settings of the ReAct agent and its built-in tools."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AgentSettings(BaseModel):
    """Budgets and sandbox of the server-side agent."""

    max_steps: int = Field(8, ge=1, le=100, description="Default step budget of run_agent.")
    max_seconds: float = Field(300.0, gt=0, description="Default time budget of run_agent.")
    enable_write_file: bool = Field(False, description="Offer write_file (allowed roots only).")
    fetch_allowed_hosts: list[str] = Field(default_factory=list, description="Hosts fetch_url may reach.")
    allow_private_urls: bool = Field(False, description="Allow fetch_url to private or loopback addresses.")
    search_endpoint: str | None = Field(
        None, description="Web search endpoint; web_search is offered only when set."
    )
    max_file_bytes: int = Field(1024 * 1024, ge=1, description="Largest file read_file returns.")
