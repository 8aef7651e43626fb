// The official TypeScript MCP client (@modelcontextprotocol/client, 2026-07-28) confirming a write
// in its own dialog: an elicitation handler stands for the person and answers every question with
// the action given. Calls add_note once, then reads the feedback back, and prints one JSON
// document of what it saw.
// Usage, from the folder whose node_modules holds the SDK (the repo's .node/):
//   node ../tests/ts/elicitation.mjs <mcp-url> <bearer-token> <accept|decline> <note text>

import { registerHooks } from "node:module";
import { pathToFileURL } from "node:url";

// ES module resolution ignores the working directory, and the SDK lives in .node/, not beside
// this file: resolve the SDK's specifier as if imported from the working directory.
const SDK = "@modelcontextprotocol/client";
const FROM_CWD = pathToFileURL(`${process.cwd()}/`).href;
registerHooks({
  resolve: (specifier, context, nextResolve) =>
    specifier === SDK || specifier.startsWith(`${SDK}/`)
      ? nextResolve(specifier, { ...context, parentURL: FROM_CWD })
      : nextResolve(specifier, context),
});
const { Client, StreamableHTTPClientTransport } = await import(SDK);

const TIMEOUT_MS = 20_000;
const MODERN = "2026-07-28";

function fail(message) {
  process.stderr.write(`elicitation.mjs: ${message}\n`);
  process.exit(1);
}

async function connected(url, token, asked, action) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client(
    { name: "gateway-e2e-typescript-elicitation", version: "1.0.0" },
    { capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode: { pin: MODERN } } },
  );
  client.setRequestHandler("elicitation/create", async (request) => {
    asked.push(request.params.message);
    return action === "accept" ? { action, content: { confirm: true } } : { action };
  });
  await client.connect(transport, { timeout: TIMEOUT_MS });
  return { client, transport };
}

async function main(url, token, action, note) {
  const asked = [];
  const { client, transport } = await connected(url, token, asked, action);
  const options = { timeout: TIMEOUT_MS };
  try {
    const listed = await client.callTool({ name: "list_feedback", arguments: { limit: 1 } },
                                         options);
    const id = listed.structuredContent.items[0].id;
    const written = await client.callTool({ name: "add_note", arguments: { id, content: note } },
                                          options);
    const read = await client.callTool({ name: "get_feedback", arguments: { id } }, options);
    return {
      protocolVersion: transport.protocolVersion ?? null,
      asked,
      result: {
        isError: written.isError ?? false,
        structuredContent: written.structuredContent ?? null,
        content: written.content ?? [],
      },
      notes: (read.structuredContent.notes ?? []).map((n) => n.content),
    };
  } finally {
    await client.close();
  }
}

const [url, token, action, note] = process.argv.slice(2);
if (!url || !token || !["accept", "decline"].includes(action) || !note) {
  fail("usage: node elicitation.mjs <mcp-url> <bearer-token> <accept|decline> <note text>");
}

const timer = setTimeout(() => fail(`no answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
try {
  const seen = await main(url, token, action, note);
  process.stdout.write(`${JSON.stringify(seen)}\n`);
} catch (error) {
  fail(error?.stack ?? String(error));
} finally {
  clearTimeout(timer);
}
