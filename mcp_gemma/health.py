"""The status record every service reports for ``health_check``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ComponentStatus(BaseModel):
    """One model or index and whether it is ready."""

    name: str
    kind: str = Field(description="embedder, llm, vector_index, keyword_index, memory …")
    loaded: bool
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
