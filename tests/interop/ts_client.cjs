// The official TypeScript MCP SDK client (@modelcontextprotocol/sdk, pinned in
// tests/deps/package.json) for tests/interop/test_gateway_ts_client.py.
//
// usage: NODE_PATH=.deps/node/node_modules node ts_client.cjs streamable|sse URL NAME BACKEND
//
// Connects over Streamable HTTP or the legacy HTTP+SSE transport, declares sampling (its
// callback answers "answer-from-NAME"), lists tools, calls BACKEND__echo and
// BACKEND__sample, and prints one JSON line with what it saw.
"use strict";

const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { SSEClientTransport } = require("@modelcontextprotocol/sdk/client/sse.js");
const { CreateMessageRequestSchema } = require("@modelcontextprotocol/sdk/types.js");

async function main() {
  const [mode, url, name, backend] = process.argv.slice(2);
  const sampled = [];
  const client = new Client({ name: `ts-${name}`, version: "0" }, { capabilities: { sampling: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    sampled.push(req.params.messages[0].content.text);
    return { role: "assistant", content: { type: "text", text: `answer-from-${name}` }, model: "m" };
  });
  const transport =
    mode === "sse" ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const text = (r) => r.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
  const echo = text(await client.callTool({ name: `${backend}__echo`, arguments: { message: `hi ${name}` } }));
  const sample = text(await client.callTool({ name: `${backend}__sample`, arguments: { prompt: `from ${name}` } }));
  await client.close();
  process.stdout.write(JSON.stringify({ tools, echo, sample, sampled }) + "\n");
}

main().catch((e) => {
  process.stderr.write(`ts_client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
