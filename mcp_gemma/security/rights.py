"""What a principal may do: the rules the MCP tools and the REST routes share.

A call is named by its MCP tool (``ingest_document``, ``recall_memory`` …: a REST route checks the
tool it stands for, with the same arguments), so one table says which calls change data, which
memory namespaces a call uses and which document collections (a principal's namespaces govern the
collections of the same names too).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from mcp_gemma.errors import AccessDeniedError
from mcp_gemma.security.principals import Principal

MUTATING_TOOLS = frozenset(
    {
        "ingest_document",
        "batch_ingest",
        "delete_document",
        "store_memory",
        "clear_memory",
        "consolidate_memory",
        "agent_write_file",
        "sync_folder",
    }
)
"""Tools that change stored data: refused to read-only principals, audited. ``run_agent`` joins them
when its ``tools`` include ``write_file`` or ``store_memory``, or are not given (then it has them all)."""

NAMESPACED_TOOLS = frozenset(
    {"store_memory", "recall_memory", "clear_memory", "get_memory_stats", "consolidate_memory"}
)
"""Tools whose ``agent_id`` argument (default ``"default"``) names the memory namespace they use."""

DOCUMENT_TOOLS = frozenset(
    {
        "ingest_document",
        "batch_ingest",
        "sync_folder",
        "search_documents",
        "semantic_search",
        "hybrid_search",
        "research_query",
        "list_documents",
        "get_document",
        "delete_document",
    }
)
"""Tools whose ``collection`` argument (default ``"default"``) names the knowledge base they use.
``reason`` with ``use_knowledge_base`` and ``run_agent`` with its ``search_documents`` tool use one too."""

DEFAULT_NAMESPACE = "default"
AGENT_DOCUMENT_TOOL = "search_documents"
AGENT_WRITE_TOOLS = frozenset({"write_file", "store_memory"})
AGENT_MEMORY_TOOLS = frozenset({"recall_memory", "store_memory"})


def writes(name: str, args: Mapping[str, Any], plugin_writes: Set[str] = frozenset()) -> bool:
    """Whether this call changes data: a tool of :data:`MUTATING_TOOLS`, ``run_agent`` with tools that
    write, or a server plugin's tool in ``plugin_writes`` (those not declared read-only)."""
    if name in MUTATING_TOOLS or name in plugin_writes:
        return True
    if name == "run_agent":
        # No list = every tool the agent has, store_memory among them.
        tools = args.get("tools")
        return not isinstance(tools, list) or bool(AGENT_WRITE_TOOLS.intersection(map(str, tools)))
    return False


def _namespaces_used(name: str, args: Mapping[str, Any]) -> list[str]:
    if name in NAMESPACED_TOOLS:
        return [str(args.get("agent_id", DEFAULT_NAMESPACE))]
    if name == "research_query" and args.get("use_memory", True) is not False:
        return [DEFAULT_NAMESPACE]
    if name == "run_agent":
        tools = args.get("tools")
        if tools is None or (isinstance(tools, list) and AGENT_MEMORY_TOOLS.intersection(map(str, tools))):
            return [DEFAULT_NAMESPACE]
    return []


def collections_used(name: str, args: Mapping[str, Any]) -> list[str]:
    """The document collections a call reads or changes (none for a call that touches no document)."""
    collection = str(args.get("collection", DEFAULT_NAMESPACE))
    if name in DOCUMENT_TOOLS:
        return [collection]
    if name == "reason" and args.get("use_knowledge_base") is True:
        return [collection]
    if name == "run_agent":
        tools = args.get("tools")
        if not isinstance(tools, list) or AGENT_DOCUMENT_TOOL in map(str, tools):
            return [collection]
    return []


def check_tool(
    principal: Principal, name: str, args: Mapping[str, Any], plugin_writes: Set[str] = frozenset()
) -> None:
    """Raise :class:`AccessDeniedError` when ``principal`` may not make this call."""
    if writes(name, args, plugin_writes):
        principal.require_write(name)
    if not principal.limited:
        return
    for collection in collections_used(name, args):
        principal.require_collection(collection, name)
    for namespace in _namespaces_used(name, args):
        if name == "research_query" and not principal.allows(namespace):
            raise AccessDeniedError(
                f"principal {principal.name!r} may not recall memory namespace 'default', which "
                "research_query searches with use_memory=true; call it with use_memory=false"
            )
        principal.require_namespace(namespace, name)
    if name == "store_memory" and args.get("shared") is True:
        raise AccessDeniedError(
            f"principal {principal.name!r} is limited to some namespaces and may not store shared "
            "memories (every namespace can recall them); store it with shared=false"
        )
