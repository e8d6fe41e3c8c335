#!/usr/bin/env node
// conformance_client.mjs — the client the conformance suite's client scenarios drive
// (`conformance client --command "node conformance_client.mjs SHADOWCAT" --scenario S`):
// the official TypeScript MCP client (`@modelcontextprotocol/client` 2.4.x) speaking stdio to
// `SHADOWCAT forward stdio --upstream URL`, where URL is the scenario's server (the suite
// appends it as the last argument and names the scenario in MCP_CONFORMANCE_SCENARIO).
//
// Usage: SHADOWCAT_NODE_MODULES=/path/to/node_modules node conformance_client.mjs SHADOWCAT URL
//
// What the client does per scenario (what the suite checks is on the server side):
//   initialize                            connect (initialize + initialized), list tools
//   tools_call                            connect, list tools, call add_numbers {a: 5, b: 3}
//   elicitation-sep1034-client-defaults   connect with `elicitation.form.applyDefaults`, call
//                                         test_client_elicitation_defaults; its elicitation is
//                                         accepted with no content, so the SDK fills defaults
//   sse-retry                             connect, call test_reconnection (the server closes the
//                                         call's SSE stream; Shadowcat must reconnect with GET +
//                                         Last-Event-ID after the advised `retry`)
//   auth/*                                connect, which must fail: the server answers 401 and
//                                         Shadowcat (which runs no OAuth flow) must answer with
//                                         an error naming the authorization server; the error
//                                         ({code, message, data}) is printed as one JSON line
// Shadowcat's stderr (its logs) goes to this process's stderr. Exit 0 when every step worked.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [shadowcat, url] = process.argv.slice(2);
const scenario = process.env.MCP_CONFORMANCE_SCENARIO;
if (!shadowcat || !url || !scenario) {
    process.stderr.write('usage: MCP_CONFORMANCE_SCENARIO=S conformance_client.mjs SHADOWCAT URL\n');
    process.exit(2);
}

async function importEntry(name, subpath = '.') {
    const nodeModules = process.env.SHADOWCAT_NODE_MODULES;
    if (!nodeModules) throw new Error('SHADOWCAT_NODE_MODULES is not set');
    const dir = path.join(nodeModules, name);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const entry = manifest.exports?.[subpath]?.import?.default;
    if (typeof entry !== 'string') throw new Error(`${name}${subpath}: no ESM entry`);
    return import(pathToFileURL(path.join(dir, entry)).href);
}

const { Client } = await importEntry('@modelcontextprotocol/client');
const { StdioClientTransport } = await importEntry('@modelcontextprotocol/client', './stdio');

const capabilities = scenario === 'elicitation-sep1034-client-defaults' ? { elicitation: { form: { applyDefaults: true } } } : {};
const client = new Client({ name: 'shadowcat-conformance-client', version: '1.0.0' }, { capabilities });
if (capabilities.elicitation) {
    client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: {} }));
}
const transport = new StdioClientTransport({
    command: shadowcat,
    args: ['forward', 'stdio', '--upstream', url],
    stderr: 'inherit'
});

const watchdog = setTimeout(() => {
    process.stderr.write(`conformance_client: ${scenario} did not finish in 25 s\n`);
    process.exit(1);
}, 25_000);

function text(result) {
    return (result.content ?? []).filter(b => b.type === 'text').map(b => b.text);
}

if (scenario.startsWith('auth/')) {
    try {
        await client.connect(transport);
    } catch (error) {
        process.stdout.write(JSON.stringify({ code: error?.code, message: String(error?.message ?? error), data: error?.data }) + '\n');
        await client.close().catch(() => {});
        process.exit(0);
    }
    process.stderr.write(`conformance_client: ${scenario}: connected without a token\n`);
    process.exit(1);
}

try {
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map(t => t.name);
    process.stderr.write(`conformance_client: ${scenario}: tools ${JSON.stringify(tools)}\n`);
    if (scenario === 'tools_call') {
        const r = await client.callTool({ name: 'add_numbers', arguments: { a: 5, b: 3 } });
        process.stderr.write(`conformance_client: add_numbers -> ${JSON.stringify(text(r))}\n`);
    } else if (scenario === 'elicitation-sep1034-client-defaults') {
        const r = await client.callTool({ name: 'test_client_elicitation_defaults', arguments: {} });
        process.stderr.write(`conformance_client: defaults -> ${JSON.stringify(text(r))}\n`);
    } else if (scenario === 'sse-retry') {
        const r = await client.callTool({ name: 'test_reconnection', arguments: {} });
        const got = text(r);
        process.stderr.write(`conformance_client: test_reconnection -> ${JSON.stringify(got)}\n`);
        if (!got.some(t => t.includes('successfully'))) throw new Error(`unexpected result ${JSON.stringify(r)}`);
    } else if (scenario !== 'initialize') {
        throw new Error(`no steps for scenario ${scenario}`);
    }
    await client.close();
    clearTimeout(watchdog);
    process.exit(0);
} catch (error) {
    process.stderr.write(`conformance_client: ${scenario}: ${error?.stack ?? error}\n`);
    await client.close().catch(() => {});
    process.exit(1);
}
