#!/usr/bin/env node
// ts_client.mjs — drive a Shadowcat gateway with the official TypeScript MCP client
// (`@modelcontextprotocol/client` 2.4.x) as a real client, over Streamable HTTP.
//
// Usage:
//   SHADOWCAT_NODE_MODULES=/path/to/node_modules node ts_client.mjs URL [--mode legacy|auto]
//       [--expect-version V] [--answer NAME] [--timeout SECONDS] [--trace]
//
//   URL     the gateway's Streamable HTTP endpoint, e.g. http://localhost:8080/mcp
//   --mode  `ClientOptions.versionNegotiation.mode`:
//             legacy (the SDK's default): the plain 2025 connect — `initialize`, a session;
//             auto: a `server/discover` probe first, `initialize` only on legacy evidence.
//   --expect-version V  fail unless the SDK negotiated V ('2025' = any 2025 revision).
//   --answer NAME  the name the elicitation handler answers with.
//   --trace  log every JSON-RPC message (both directions) and HTTP exchange to stderr.
//
// The upstream behind the gateway must have the conformance fixtures (Shadowcat's demo server,
// or tests/fixtures/modern-server.mjs). The run: tools/list (must include
// `test_input_required_result_elicitation`), tools/call of that tool — the server asks for the
// user's name, the client's `elicitation/create` handler answers it (on a 2025 connection as a
// real server->client request on the call's SSE stream; on 2026-07-28 as an `input_required`
// result the SDK fulfils through the same handler and retries) — and resources/read of
// `test://static-text`.
//
// Output: one JSON line per step on stdout, `{"step": ..., "ok": true, ...}`, then a `result`
// line with everything the test asserts on and a `summary` line; the first failure prints
// `{"step": ..., "ok": false, "error": ...}` and exits 1. Exit 0 means every step passed.
//
// How the era is known (the `negotiation` step and the `result` line): the SDK's own
// `getProtocolEra()` / `getNegotiatedProtocolVersion()` / `getDiscoverResult()`, the JSON-RPC
// methods it sent (a modern connection sends `server/discover` and never `initialize`), and per
// HTTP request the `MCP-Protocol-Version` header it stamped and whether the gateway answered with
// an `Mcp-Session-Id` (only `initialize` gets one).
//
// The SDK is loaded the way tests/fixtures/modern-server.mjs loads it: this file does not live
// beside node_modules, so it reads the package's ESM entry from SHADOWCAT_NODE_MODULES and
// imports that file by URL.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const FIXTURE_TOOL = 'test_input_required_result_elicitation';
const FIXTURE_RESOURCE = 'test://static-text';
const FIXTURE_RESOURCE_TEXT = 'This is the content of the static text resource.';
const DEFAULT_ANSWER = 'Grace Hopper (typescript)';
const LEGACY_VERSIONS = ['2025-03-26', '2025-06-18', '2025-11-25'];

function emit(record) {
    process.stdout.write(JSON.stringify(record) + '\n');
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

let cli;
try {
    cli = parseArgs({
        allowPositionals: true,
        options: {
            mode: { type: 'string', default: 'legacy' },
            'expect-version': { type: 'string' },
            answer: { type: 'string', default: DEFAULT_ANSWER },
            timeout: { type: 'string', default: '60' },
            trace: { type: 'boolean', default: false }
        },
        strict: true
    });
} catch (error) {
    process.stderr.write(`ts_client: ${error.message}\n`);
    process.exit(2);
}
const URL_ARG = cli.positionals[0];
const MODE = cli.values.mode;
const EXPECT = cli.values['expect-version'];
const TIMEOUT_S = Number(cli.values.timeout);
const TRACE = cli.values.trace;
const ANSWERED_NAME = cli.values.answer;
if (!URL_ARG || cli.positionals.length !== 1 || !['legacy', 'auto'].includes(MODE) || !(TIMEOUT_S > 0)) {
    process.stderr.write('usage: ts_client.mjs URL [--mode legacy|auto] [--expect-version V] [--answer NAME] [--timeout S] [--trace]\n');
    process.exit(2);
}

function trace(line) {
    if (TRACE) process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

class StepFailed extends Error {}

function check(condition, message) {
    if (!condition) throw new StepFailed(message);
}

let current = 'startup';
let started = performance.now();
let passed = 0;

function begin(name) {
    current = name;
    started = performance.now();
}

function ok(info = {}) {
    emit({ step: current, ok: true, ms: Math.round((performance.now() - started) * 10) / 10, ...info });
    passed += 1;
}

function fail(error) {
    const record = { step: current, ok: false, exception: error?.constructor?.name ?? typeof error, error: String(error?.message ?? error) };
    if (error?.code !== undefined) record.code = error.code;
    if (error?.data !== undefined) record.data = error.data;
    emit(record);
    if (error?.stack) process.stderr.write(`${error.stack}\n`);
}

// Bound the whole run; report the step that was in progress.
const watchdog = setTimeout(() => {
    emit({ step: current, ok: false, exception: 'TimeoutError', error: `run exceeded ${TIMEOUT_S}s during step '${current}'` });
    process.exit(1);
}, TIMEOUT_S * 1000);

// ---------------------------------------------------------------------------------------------
// SDK loading (see the header)
// ---------------------------------------------------------------------------------------------

async function importPackage(name) {
    const nodeModules = process.env.SHADOWCAT_NODE_MODULES;
    if (!nodeModules) throw new Error('SHADOWCAT_NODE_MODULES is not set; point it at the node_modules that holds @modelcontextprotocol/client');
    const dir = path.join(nodeModules, name);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const root = manifest.exports?.['.'];
    const esm = typeof root === 'string' ? root : (root?.import?.default ?? root?.import ?? manifest.module ?? manifest.main);
    if (typeof esm !== 'string') throw new Error(`${name}: no ESM entry in package.json`);
    return { sdk: await import(pathToFileURL(path.join(dir, esm)).href), version: manifest.version };
}

// ---------------------------------------------------------------------------------------------
// Recording: the HTTP exchanges (through the transport's `fetch` option) and the JSON-RPC
// messages (by wrapping the transport's send / onmessage).
// ---------------------------------------------------------------------------------------------

const httpLog = [];
const wire = [];

async function recordingFetch(url, init) {
    const headers = new Headers(init?.headers);
    const response = await fetch(url, init);
    const exchange = {
        method: init?.method ?? 'GET',
        mcp_method: headers.get('mcp-method'),
        protocol_version: headers.get('mcp-protocol-version'),
        session_sent: headers.has('mcp-session-id'),
        status: response.status,
        content_type: response.headers.get('content-type'),
        session_received: response.headers.has('mcp-session-id')
    };
    httpLog.push(exchange);
    trace(`[http] ${JSON.stringify(exchange)}`);
    return response;
}

function recordTransport(transport) {
    const send = transport.send.bind(transport);
    transport.send = (message, options) => {
        wire.push(['out', message]);
        trace(`[wire out] ${JSON.stringify(message)}`);
        return send(message, options);
    };
    let handler;
    const wrapped = (message, extra) => {
        wire.push(['in', message]);
        trace(`[wire in] ${JSON.stringify(message)}`);
        return handler?.(message, extra);
    };
    Object.defineProperty(transport, 'onmessage', {
        configurable: true,
        enumerable: true,
        get: () => (handler ? wrapped : undefined),
        set: fn => {
            handler = fn;
        }
    });
    return transport;
}

const sentMethods = () => wire.filter(([d, m]) => d === 'out' && typeof m.method === 'string').map(([, m]) => m.method);

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async function listAll(fetchPage, key) {
    const items = [];
    let cursor;
    for (let i = 0; i < 100; i++) {
        const page = await fetchPage(cursor);
        items.push(...page[key]);
        cursor = page.nextCursor;
        if (!cursor) return items;
    }
    throw new StepFailed(`more than 100 pages of ${key}`);
}

function checkVersion(negotiated) {
    if (EXPECT === undefined) return;
    if (EXPECT === '2025') check(LEGACY_VERSIONS.includes(negotiated), `negotiated ${negotiated}, expected a 2025 revision`);
    else check(negotiated === EXPECT, `negotiated ${negotiated}, expected ${EXPECT}`);
}

async function main() {
    begin('load_sdk');
    const { sdk, version: sdkVersion } = await importPackage('@modelcontextprotocol/client');
    const { Client, StreamableHTTPClientTransport } = sdk;
    ok({ package: '@modelcontextprotocol/client', version: sdkVersion });

    const client = new Client(
        { name: 'shadowcat-ts-client', version: '0.1.0' },
        {
            capabilities: { elicitation: { form: {} } },
            versionNegotiation: { mode: MODE }
        }
    );
    const asked = [];
    client.setRequestHandler('elicitation/create', async request => {
        asked.push({ message: request.params.message, requestedSchema: request.params.requestedSchema });
        return { action: 'accept', content: { name: ANSWERED_NAME } };
    });
    const transport = recordTransport(new StreamableHTTPClientTransport(new URL(URL_ARG), { fetch: recordingFetch }));

    begin('connect');
    await client.connect(transport);
    const server = client.getServerVersion();
    ok({ mode: MODE, server: server ? `${server.name} ${server.version}` : null });

    begin('negotiation');
    const era = client.getProtocolEra();
    const protocolVersion = client.getNegotiatedProtocolVersion();
    const discover = client.getDiscoverResult();
    const negotiation = {
        era,
        protocol_version: protocolVersion,
        discover_result: discover !== undefined,
        supported_versions: discover?.supportedVersions ?? null,
        session_id: transport.sessionId !== undefined,
        methods_sent: sentMethods(),
        http: [...httpLog]
    };
    checkVersion(protocolVersion);
    if (era === 'modern') {
        check(!negotiation.methods_sent.includes('initialize'), 'initialize sent on a modern connection');
        check(protocolVersion === '2026-07-28', `modern era at ${protocolVersion}`);
    } else {
        check(era === 'legacy', `unexpected era ${era}`);
        check(negotiation.methods_sent.includes('initialize'), 'legacy era without initialize');
    }
    ok(negotiation);

    begin('list_tools');
    const tools = await listAll(cursor => client.listTools(cursor ? { cursor } : undefined), 'tools');
    const names = tools.map(t => t.name).sort();
    check(names.includes(FIXTURE_TOOL), `${FIXTURE_TOOL} not in tools/list: ${names.join(', ')}`);
    ok({ count: names.length, tools: names });

    begin('call_elicitation_tool');
    const mark = wire.length;
    const result = await client.callTool({ name: FIXTURE_TOOL, arguments: {} });
    check(!result.isError, `${FIXTURE_TOOL} returned isError: ${JSON.stringify(result.content)}`);
    const toolText = (result.content ?? []).find(c => c.type === 'text')?.text;
    check(typeof toolText === 'string', `no text content in ${JSON.stringify(result)}`);
    check(asked.length === 1, `the elicitation handler ran ${asked.length} times`);
    check(toolText.includes(ANSWERED_NAME), `${FIXTURE_TOOL} result does not carry the answer: ${toolText}`);
    const since = wire.slice(mark);
    const inputRequired = since.filter(([d, m]) => d === 'in' && m.result?.resultType === 'input_required').length;
    const elicitRequests = since.filter(([d, m]) => d === 'in' && m.method === 'elicitation/create').length;
    const calls = since.filter(([d, m]) => d === 'out' && m.method === 'tools/call').length;
    const via = inputRequired ? 'input_required' : elicitRequests ? 'elicitation/create' : null;
    ok({
        text: toolText,
        elicitation: asked[0],
        answered: ANSWERED_NAME,
        input_required_results: inputRequired,
        elicitation_requests: elicitRequests,
        tools_call_requests: calls
    });

    begin('read_resource');
    const read = await client.readResource({ uri: FIXTURE_RESOURCE });
    const first = read.contents?.[0];
    check(first, `resources/read ${FIXTURE_RESOURCE} returned no contents`);
    check(typeof first.text === 'string', `${FIXTURE_RESOURCE} is not text: ${JSON.stringify(first)}`);
    check(first.text === FIXTURE_RESOURCE_TEXT, `${FIXTURE_RESOURCE} text is ${JSON.stringify(first.text)}`);
    ok({ uri: first.uri, mime_type: first.mimeType, text: first.text });

    begin('close');
    await client.close();
    ok();

    const posts = httpLog.filter(x => x.method === 'POST');
    emit({
        step: 'result',
        ok: true,
        client: 'typescript',
        mode: MODE,
        protocol_version: protocolVersion,
        era,
        initialize_sent: sentMethods().includes('initialize'),
        post_protocol_versions: [...new Set(posts.map(x => String(x.protocol_version)))].sort(),
        session_id_received: httpLog.some(x => x.session_received),
        tools: names,
        tool_text: toolText,
        elicitation_via: via,
        resource_text: first.text
    });
    emit({ step: 'summary', ok: true, client: 'typescript', mode: MODE, passed });
}

try {
    await main();
    clearTimeout(watchdog);
    process.exit(0);
} catch (error) {
    fail(error);
    process.exit(1);
}
