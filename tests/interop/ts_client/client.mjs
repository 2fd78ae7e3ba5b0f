// Independent MCP client for interop tests: connects over stdio or Streamable HTTP with the official
// TypeScript SDK, lists tools, calls one, and prints a JSON summary on stdout.
// Usage: node client.mjs stdio <command> [args...] | node client.mjs http <url>
//        env TOOL (default health_check), TOOL_ARGS (JSON, default {})
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, target, ...rest] = process.argv.slice(2);
const transport =
  mode === "stdio"
    ? new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: "inherit" })
    : new StreamableHTTPClientTransport(new URL(target));
const client = new Client({ name: "ts-interop", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
const tool = process.env.TOOL ?? "health_check";
const result = await client.callTool({ name: tool, arguments: JSON.parse(process.env.TOOL_ARGS ?? "{}") });
const summary = {
  server: client.getServerVersion(),
  tools: tools.tools.map((t) => t.name),
  isError: result.isError ?? false,
  structuredContent: result.structuredContent ?? null,
  text: (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text),
};
process.stdout.write(JSON.stringify(summary) + "\n");
await client.close();
