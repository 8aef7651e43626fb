// The official TypeScript MCP client against one gateway endpoint: connect over Streamable HTTP,
// list the tools, call the service's probe tools, print one JSON document of what it saw.
// Usage, from the folder whose node_modules holds the SDK (the repo's .node/):
//   node ../tests/ts/client.mjs <mcp-url> <bearer-token>

import { registerHooks } from "node:module";
import { pathToFileURL } from "node:url";

// ES module resolution ignores NODE_PATH and the working directory, and the SDK lives in .node/,
// not beside this file: resolve the SDK's specifiers (through its own exports map, "import"
// condition) as if imported from the working directory.
const SDK = "@modelcontextprotocol/sdk/";
const FROM_CWD = pathToFileURL(`${process.cwd()}/`).href;
registerHooks({
  resolve: (specifier, context, nextResolve) =>
    specifier.startsWith(SDK)
      ? nextResolve(specifier, { ...context, parentURL: FROM_CWD })
      : nextResolve(specifier, context),
});
const { Client } = await import(`${SDK}client/index.js`);
const { StreamableHTTPClientTransport } = await import(`${SDK}client/streamableHttp.js`);
const { LATEST_PROTOCOL_VERSION } = await import(`${SDK}types.js`);

const TIMEOUT_MS = 20_000;

// The calls made per service, chosen by the last path segment before /mcp.
const CALLS = {
  retently: [
    ["list_feedback", { limit: 3 }],
    ["ping", {}],
  ],
  refiner: [["get-projects", {}]],
};

function fail(message) {
  process.stderr.write(`client.mjs: ${message}\n`);
  process.exit(1);
}

async function listAllTools(client) {
  const tools = [];
  let cursor;
  do {
    const page = await client.listTools(cursor === undefined ? {} : { cursor });
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return tools;
}

async function main(url, token) {
  const service = new URL(url).pathname.split("/").filter(Boolean).at(-2);
  const calls = CALLS[service];
  if (calls === undefined) fail(`no calls defined for service ${JSON.stringify(service)}`);

  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "gateway-e2e-typescript", version: "1.0.0" });
  const options = { timeout: TIMEOUT_MS };
  await client.connect(transport, options);
  try {
    const tools = await listAllTools(client);
    const results = {};
    for (const [name, args] of calls) {
      const result = await client.callTool({ name, arguments: args }, undefined, options);
      results[name] = {
        isError: result.isError ?? false,
        structuredContent: result.structuredContent ?? null,
        content: result.content ?? [],
      };
    }
    return {
      service,
      requestedVersion: LATEST_PROTOCOL_VERSION,
      protocolVersion: transport.protocolVersion ?? null,
      sessionId: transport.sessionId ?? null,
      serverInfo: client.getServerVersion() ?? null,
      capabilities: client.getServerCapabilities() ?? null,
      tools: tools.map((tool) => tool.name),
      results,
    };
  } finally {
    await client.close();
  }
}

const [url, token] = process.argv.slice(2);
if (!url || !token) fail("usage: node client.mjs <mcp-url> <bearer-token>");

const timer = setTimeout(() => fail(`no answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
try {
  const seen = await main(url, token);
  process.stdout.write(`${JSON.stringify(seen)}\n`);
} catch (error) {
  fail(error?.stack ?? String(error));
} finally {
  clearTimeout(timer);
}
