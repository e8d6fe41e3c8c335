#!/usr/bin/env python3
"""Drive a Shadowcat gateway with the official Python MCP SDK (``mcp`` 2.x) as a real client.

Usage:
    python_client.py URL SCENARIO [--mode legacy|auto|default] [--expect-version V] [--answer NAME]
                     [--timeout SECONDS] [--trace]

    URL       the gateway's Streamable HTTP endpoint, e.g. http://127.0.0.1:8080/mcp
    SCENARIO  ``demo``       - the gateway in front of Shadowcat's built-in demo server
              ``everything`` - the gateway in front of @modelcontextprotocol/server-everything
              ``fixtures``   - the three operations every real-client run checks, against any
                               upstream that has the conformance fixtures (the demo server, or
                               tests/fixtures/modern-server.mjs): tools/list, a tools/call of
                               ``test_input_required_result_elicitation`` whose elicitation the
                               client answers, and resources/read of ``test://static-text``

Run it with the test virtualenv: ``.test-deps/venv/bin/python tests/clients/python_client.py URL demo``.

Protocol era (``--mode``):
  ``legacy``  (the script's default, kept for the ``demo`` / ``everything`` runs) -
              ``Client(mode="legacy")``: ``initialize`` (protocolVersion 2025-11-25), the
              ``Mcp-Session-Id`` the gateway returns, ``MCP-Protocol-Version`` on every request.
  ``auto``    ``Client(mode="auto")``: a stateless 2026-07-28 ``server/discover`` probe first,
              ``initialize`` only when the probe fails.
  ``default`` ``Client(...)`` without ``mode=``: whatever the SDK defaults to (``"auto"`` in
              mcp 2.3.x). On a 2026-07-28 connection, an elicitation the server needs comes back
              as an ``input_required`` result; the SDK runs the same ``elicitation_callback`` for it
              and retries the call with ``inputResponses`` and the echoed ``requestState``.

``--expect-version V`` makes the run fail unless the SDK negotiated V; ``2025`` accepts any of
the 2025 revisions. ``--answer NAME`` is the name the elicitation callback gives (``fixtures``).
The ``negotiation`` step and the final ``result`` line say how the era was established: the
SDK's ``protocol_version``, whether it holds a ``DiscoverResult`` or an ``InitializeResult``, the
JSON-RPC methods it sent, and per HTTP request the ``MCP-Protocol-Version`` header it sent and
whether the gateway answered with an ``Mcp-Session-Id`` (only ``initialize`` gets one).

Output: one JSON line per step on stdout, ``{"step": ..., "ok": true, ...}``. The first failure
prints ``{"step": ..., "ok": false, "error": ..., "exception": ...}`` (traceback on stderr) and
the exit status is 1; exit status 0 means every step passed. The whole run is bounded by
``--timeout`` (60 s by default). ``--trace`` logs every JSON-RPC message (both directions) to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.client import Client, ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.message import SessionMessage

DEFAULT_TIMEOUT_S = 60.0
CLIENT_INFO = types.Implementation(name="shadowcat-python-client", version="0.1.0")


class StepFailed(AssertionError):
    """A check inside a step did not hold."""


def check(condition: Any, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


class Reporter:
    """Tracks the step in progress so a failure (or the timeout) names it."""

    def __init__(self) -> None:
        self.current = "startup"
        self.started = time.monotonic()
        self.passed: list[str] = []

    def begin(self, name: str) -> None:
        self.current = name
        self.started = time.monotonic()

    def ok(self, **info: Any) -> None:
        elapsed_ms = round((time.monotonic() - self.started) * 1000, 1)
        emit({"step": self.current, "ok": True, "ms": elapsed_ms, **info})
        self.passed.append(self.current)

    def fail(self, exc: BaseException) -> None:
        leaves = list(_leaf_exceptions(exc))
        primary = leaves[0] if leaves else exc
        record: dict[str, Any] = {
            "step": self.current,
            "ok": False,
            "exception": type(primary).__name__,
            "error": str(primary) or repr(primary),
        }
        error = getattr(primary, "error", None)  # MCPError carries the JSON-RPC error
        if isinstance(error, types.ErrorData):
            record["rpc_error"] = error.model_dump(mode="json", exclude_none=True)
        if len(leaves) > 1:
            record["other_exceptions"] = [f"{type(e).__name__}: {e}" for e in leaves[1:]]
        emit(record)
        traceback.print_exception(exc, file=sys.stderr)


def _leaf_exceptions(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaf_exceptions(inner)
    else:
        yield exc


# --------------------------------------------------------------------------------------------
# Wire recording: every JSON-RPC message the SDK writes to / reads from the HTTP transport, in
# order. Used to prove ordering (progress notifications before the tool result) and for --trace.
# --------------------------------------------------------------------------------------------


class WireLog:
    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def record(self, direction: str, item: Any) -> None:
        if not isinstance(item, SessionMessage):
            if self.trace:
                print(f"[wire {direction}] transport exception: {item!r}", file=sys.stderr, flush=True)
            return
        data = item.message.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.entries.append((direction, data))
        if self.trace:
            print(f"[wire {direction}] {json.dumps(data)}", file=sys.stderr, flush=True)

    def find_request(self, method: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        for direction, data in self.entries:
            if direction == "out" and data.get("method") == method and "id" in data and predicate(data):
                return data
        return None

    def inbound_since(self, index: int = 0) -> list[dict[str, Any]]:
        return [data for direction, data in self.entries[index:] if direction == "in"]


class _RecordingStream:
    """Wraps one of the transport's streams; the subclasses record what passes."""

    def __init__(self, inner: Any, wire: WireLog) -> None:
        self._inner = inner
        self._wire = wire

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


class _RecordingReadStream(_RecordingStream):
    @property
    def last_context(self) -> Any:  # the dispatcher restores the sender's contextvars from this
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        item = await self._inner.receive()
        self._wire.record("in", item)
        return item

    def __aiter__(self) -> _RecordingReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


class _RecordingWriteStream(_RecordingStream):
    async def send(self, item: Any) -> None:
        self._wire.record("out", item)
        await self._inner.send(item)


class HttpLog:
    """The HTTP requests the SDK's transport made: method, the MCP headers sent, status and
    the ``Mcp-Session-Id`` (if any) of the response."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []

    async def on_response(self, response: Any) -> None:
        request = response.request
        self.exchanges.append(
            {
                "method": request.method,
                "mcp_method": request.headers.get("mcp-method"),
                "protocol_version": request.headers.get("mcp-protocol-version"),
                "session_sent": request.headers.get("mcp-session-id") is not None,
                "status": response.status_code,
                "session_received": response.headers.get("mcp-session-id") is not None,
            }
        )


@asynccontextmanager
async def recording_transport(url: str, wire: WireLog, http: HttpLog | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's own Streamable HTTP transport, with both message streams recorded (and, with
    ``http``, the headers of every HTTP exchange)."""
    if http is None:
        async with streamable_http_client(url) as (read_stream, write_stream):
            yield _RecordingReadStream(read_stream, wire), _RecordingWriteStream(write_stream, wire)
        return
    async with create_mcp_http_client() as http_client:
        http_client.event_hooks = {"request": [], "response": [http.on_response]}
        async with streamable_http_client(url, http_client=http_client) as (read_stream, write_stream):
            yield _RecordingReadStream(read_stream, wire), _RecordingWriteStream(write_stream, wire)


# --------------------------------------------------------------------------------------------
# Client-side callbacks for server-initiated requests.
# --------------------------------------------------------------------------------------------


class Callbacks:
    def __init__(self) -> None:
        self.elicitations: list[types.ElicitRequestParams] = []
        self.samplings: list[types.CreateMessageRequestParams] = []

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        self.elicitations.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada", "confirm": True})

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.ErrorData:
        self.samplings.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled!"),
            model="shadowcat-python-client-fake-model",
            stop_reason="endTurn",
        )


def make_client(
    url: str,
    mode: str,
    wire: WireLog,
    callbacks: Callbacks,
    http: HttpLog | None = None,
    elicitation: Any = None,
) -> Client:
    # mode "default" passes no mode= at all, so the SDK's own default applies.
    mode_arg: dict[str, Any] = {} if mode == "default" else {"mode": mode}
    return Client(
        recording_transport(url, wire, http),
        **mode_arg,
        client_info=CLIENT_INFO,
        sampling_callback=callbacks.sampling,
        elicitation_callback=elicitation or callbacks.elicitation,
        cache=None,  # every list/read must reach the gateway
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def texts(blocks: list[Any]) -> list[str]:
    return [b.text for b in blocks if isinstance(b, types.TextContent)]


def only_text(result: types.CallToolResult, step: str) -> str:
    check(not result.is_error, f"{step}: tool returned isError=true: {texts(result.content)}")
    found = texts(result.content)
    check(found, f"{step}: no text content in result: {result.content!r}")
    return found[0]


async def list_all(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> list[Any]:
    """Walk every page of a paginated list call."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(100):
        page = await fetch(cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise StepFailed(f"more than 100 pages of {attr}")


def initialize_info(client: Client) -> dict[str, Any]:
    info = client.server_info
    caps = client.server_capabilities
    return {
        "protocol_version": client.protocol_version,
        "server": f"{info.name} {info.version}" if info else None,
        "capabilities": sorted(k for k, v in caps.model_dump(exclude_none=True).items() if v is not None),
    }


async def initialize_step(rep: Reporter, client: Client, mode: str) -> None:
    rep.ok(mode=mode, **initialize_info(client))
    if mode == "legacy":
        rep.begin("protocol_version")
        check(
            client.protocol_version in ("2025-03-26", "2025-06-18", "2025-11-25"),
            f"unexpected negotiated version {client.protocol_version!r}",
        )
        check(client.session.initialize_result is not None, "legacy mode did not run initialize")
        rep.ok(negotiated=client.protocol_version)


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


async def scenario_demo(url: str, mode: str, rep: Reporter, wire: WireLog) -> None:
    callbacks = Callbacks()
    rep.begin("initialize")
    async with make_client(url, mode, wire, callbacks) as client:
        await initialize_step(rep, client, mode)

        rep.begin("list_tools")
        tools = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        names = {t.name for t in tools}
        missing = {"echo", "add", "slow", "sample", "elicit"} - names
        check(not missing, f"tools missing from tools/list: {sorted(missing)} (got {sorted(names)})")
        rep.ok(count=len(tools))

        rep.begin("call_echo")
        text = only_text(await client.call_tool("echo", {"message": "hello from python"}), "echo")
        check(text == "hello from python", f"echo returned {text!r}")
        rep.ok(text=text)

        rep.begin("call_add")
        result = await client.call_tool("add", {"a": 2, "b": 3})
        text = only_text(result, "add")
        check(text == "5", f"add returned {text!r}")
        check(
            result.structured_content in (None, {"sum": 5}),
            f"add structuredContent is {result.structured_content!r}",
        )
        rep.ok(text=text, structured=result.structured_content)

        rep.begin("call_slow_progress")
        await call_slow_with_progress(client, wire, rep)

        rep.begin("call_elicit")
        result = await client.call_tool("elicit", {"message": "who?"})
        text = only_text(result, "elicit")
        check(len(callbacks.elicitations) == 1, f"elicitation callback ran {len(callbacks.elicitations)} times")
        asked = callbacks.elicitations[0].message
        check(asked == "who?", f"elicitation/create carried message {asked!r}")
        check("Ada" in text and "accept" in text, f"elicit result does not reflect the answer: {text!r}")
        rep.ok(text=text)

        rep.begin("call_sample")
        result = await client.call_tool("sample", {"prompt": "hi"})
        text = only_text(result, "sample")
        check(len(callbacks.samplings) == 1, f"sampling callback ran {len(callbacks.samplings)} times")
        prompt_texts = [
            m.content.text for m in callbacks.samplings[0].messages if isinstance(m.content, types.TextContent)
        ]
        check(prompt_texts == ["hi"], f"sampling/createMessage carried messages {prompt_texts!r}")
        check(text == "sampled!", f"sample returned {text!r}")
        rep.ok(text=text)

        rep.begin("list_resources")
        resources = await list_all(lambda c: client.list_resources(cursor=c), "resources")
        uris = [str(r.uri) for r in resources]
        check("demo://readme" in uris, f"demo://readme not in resources/list: {uris}")
        rep.ok(count=len(resources))

        rep.begin("read_resource")
        read = await client.read_resource("demo://readme")
        check(read.contents, "resources/read returned no contents")
        first = read.contents[0]
        check(isinstance(first, types.TextResourceContents), f"demo://readme is not text: {type(first).__name__}")
        check(str(first.uri) == "demo://readme", f"contents uri is {first.uri!r}")
        check(first.text.strip(), "demo://readme text is empty")
        rep.ok(uri=str(first.uri), mime_type=first.mime_type, chars=len(first.text))

        rep.begin("list_prompts")
        prompts = await list_all(lambda c: client.list_prompts(cursor=c), "prompts")
        prompt_names = [p.name for p in prompts]
        check("greeting" in prompt_names, f"greeting not in prompts/list: {prompt_names}")
        rep.ok(count=len(prompts))

        rep.begin("get_prompt")
        got = await client.get_prompt("greeting", {"name": "Ada"})
        message_texts = [m.content.text for m in got.messages if isinstance(m.content, types.TextContent)]
        check(any("Ada" in t for t in message_texts), f"greeting does not mention Ada: {message_texts!r}")
        rep.ok(text=message_texts[0])

        rep.begin("close")
    rep.ok()


async def call_slow_with_progress(client: Client, wire: WireLog, rep: Reporter) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    three = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if len(seen) >= 3:
            three.set()

    mark = len(wire.entries)
    result = await client.call_tool("slow", {"steps": 3, "delay_ms": 20}, progress_callback=on_progress)
    text = only_text(result, "slow")
    check(text == "done after 3 steps", f"slow returned {text!r}")

    # Wire order: the progress notifications for this request must precede its response.
    request = wire.find_request("tools/call", lambda d: d.get("params", {}).get("name") == "slow")
    check(request is not None, "tools/call slow not seen on the wire")
    token = request["params"].get("_meta", {}).get("progressToken")
    check(token is not None, "tools/call slow was sent without a progressToken")
    order: list[str] = []
    for data in wire.inbound_since(mark):
        if data.get("method") == "notifications/progress" and str(data["params"].get("progressToken")) == str(token):
            order.append("progress")
        elif "method" not in data and str(data.get("id")) == str(request["id"]):
            order.append("result")
    check(order.count("result") == 1, f"expected one response to tools/call slow, wire order: {order}")
    before = order[: order.index("result")]
    check(len(before) == 3, f"expected 3 progress notifications before the result, wire order: {order}")

    # The SDK runs progress callbacks as tasks; give the last one a moment to be scheduled.
    with anyio.move_on_after(2):
        await three.wait()
    check(len(seen) == 3, f"progress callback ran {len(seen)} times: {seen}")
    check([p for p, _, _ in seen] == [1.0, 2.0, 3.0], f"progress values {seen}")
    check(all(t == 3.0 for _, t, _ in seen), f"progress totals {seen}")
    rep.ok(text=text, progress=[{"progress": p, "total": t, "message": m} for p, t, m in seen], wire_order=order)


async def scenario_everything(url: str, mode: str, rep: Reporter, wire: WireLog) -> None:
    callbacks = Callbacks()
    rep.begin("initialize")
    async with make_client(url, mode, wire, callbacks) as client:
        await initialize_step(rep, client, mode)

        rep.begin("list_tools")
        tools = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        names = sorted(t.name for t in tools)
        check("echo" in names, f"echo not in tools/list: {names}")
        rep.ok(count=len(tools), tools=names)

        rep.begin("call_echo")
        text = only_text(await client.call_tool("echo", {"message": "hello from python"}), "echo")
        check("hello from python" in text, f"echo returned {text!r}")
        rep.ok(text=text)

        rep.begin("list_resources")
        resources = await list_all(lambda c: client.list_resources(cursor=c), "resources")
        check(resources, "resources/list is empty")
        rep.ok(count=len(resources))

        rep.begin("read_resource")
        # Prefer a text resource; any resource will do.
        textual = [r for r in resources if (r.mime_type or "").startswith(("text/", "application/json"))]
        chosen = (textual or resources)[0]
        read = await client.read_resource(str(chosen.uri))
        check(read.contents, f"resources/read {chosen.uri} returned no contents")
        first = read.contents[0]
        if isinstance(first, types.TextResourceContents):
            size = {"chars": len(first.text)}
        else:
            size = {"blob_base64_chars": len(first.blob)}
        rep.ok(uri=str(chosen.uri), mime_type=first.mime_type, **size)

        rep.begin("list_prompts")
        prompts = await list_all(lambda c: client.list_prompts(cursor=c), "prompts")
        check(prompts, "prompts/list is empty")
        rep.ok(count=len(prompts), prompts=[p.name for p in prompts])

        rep.begin("get_prompt")
        # Prefer a prompt without required arguments; otherwise fill required ones with a value.
        def required(p: types.Prompt) -> list[str]:
            return [a.name for a in (p.arguments or []) if a.required]

        chosen_prompt = sorted(prompts, key=lambda p: (len(required(p)), p.name != "simple-prompt"))[0]
        arguments = {name: "test" for name in required(chosen_prompt)} or None
        got = await client.get_prompt(chosen_prompt.name, arguments)
        check(got.messages, f"prompts/get {chosen_prompt.name} returned no messages")
        first_text = texts([m.content for m in got.messages])[:1]
        rep.ok(prompt=chosen_prompt.name, arguments=arguments, messages=len(got.messages), text=first_text)

        rep.begin("close")
    rep.ok()


FIXTURE_TOOL = "test_input_required_result_elicitation"
FIXTURE_RESOURCE = "test://static-text"
FIXTURE_RESOURCE_TEXT = "This is the content of the static text resource."
DEFAULT_ANSWER = "Ada Lovelace (python)"
LEGACY_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")


def negotiation_info(client: Client, wire: WireLog, http: HttpLog) -> dict[str, Any]:
    """How the SDK established the era, from its own state and from the wire."""
    session = client.session
    discover = session.discover_result
    info = client.server_info
    return {
        "protocol_version": client.protocol_version,
        "era": "modern" if discover is not None else "legacy",
        "discover_result": discover is not None,
        "supported_versions": list(discover.supported_versions) if discover is not None else None,
        "initialize_result": session.initialize_result is not None,
        "server": f"{info.name} {info.version}" if info else None,
        "methods_sent": [d.get("method") for direction, d in wire.entries if direction == "out" and "method" in d],
        "http": http.exchanges,
    }


def check_version(expected: str | None, negotiated: str) -> None:
    if expected is None:
        return
    if expected == "2025":
        check(negotiated in LEGACY_VERSIONS, f"negotiated {negotiated!r}, expected a 2025 revision")
    else:
        check(negotiated == expected, f"negotiated {negotiated!r}, expected {expected!r}")


async def scenario_fixtures(
    url: str, mode: str, rep: Reporter, wire: WireLog, expect: str | None = None, answer: str = DEFAULT_ANSWER
) -> None:
    callbacks = Callbacks()
    http = HttpLog()
    asked: list[dict[str, Any]] = []

    async def elicitation(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        schema = getattr(params, "requested_schema", None)
        asked.append({"message": params.message, "requested_schema": schema})
        return types.ElicitResult(action="accept", content={"name": answer})

    # What ``mode`` a Client gets when none is passed (``--mode default``).
    sdk_default = next(f.default for f in dataclasses.fields(Client) if f.name == "mode")
    rep.begin("connect")
    async with make_client(url, mode, wire, callbacks, http, elicitation) as client:
        rep.ok(mode=mode, sdk_default_mode=sdk_default, **initialize_info(client))

        rep.begin("negotiation")
        negotiated = negotiation_info(client, wire, http)
        check_version(expect, client.protocol_version)
        if negotiated["era"] == "modern":
            check(not negotiated["initialize_result"], "a modern connection also ran initialize")
            check("initialize" not in negotiated["methods_sent"], "initialize sent on a modern connection")
        rep.ok(**negotiated)

        rep.begin("list_tools")
        tools = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        names = sorted(t.name for t in tools)
        check(FIXTURE_TOOL in names, f"{FIXTURE_TOOL} not in tools/list: {names}")
        rep.ok(count=len(tools), tools=names)

        rep.begin("call_elicitation_tool")
        mark = len(wire.entries)
        result = await client.call_tool(FIXTURE_TOOL, {})
        text = only_text(result, FIXTURE_TOOL)
        check(len(asked) == 1, f"elicitation callback ran {len(asked)} times")
        check(answer in text, f"{FIXTURE_TOOL} result does not carry the answer: {text!r}")
        # How the question travelled: an input_required result answered by a retry (2026-07-28),
        # or an elicitation/create request from the server (2025 revisions).
        inbound = wire.inbound_since(mark)
        input_required = sum(1 for d in inbound if (d.get("result") or {}).get("resultType") == "input_required")
        elicit_requests = sum(1 for d in inbound if d.get("method") == "elicitation/create")
        calls = sum(1 for direction, d in wire.entries[mark:] if direction == "out" and d.get("method") == "tools/call")
        via = "input_required" if input_required else "elicitation/create" if elicit_requests else None
        rep.ok(
            text=text,
            elicitation=asked[0],
            answered=answer,
            input_required_results=input_required,
            elicitation_requests=elicit_requests,
            tools_call_requests=calls,
        )

        rep.begin("read_resource")
        read = await client.read_resource(FIXTURE_RESOURCE)
        check(read.contents, f"resources/read {FIXTURE_RESOURCE} returned no contents")
        first = read.contents[0]
        check(isinstance(first, types.TextResourceContents), f"{FIXTURE_RESOURCE} is not text: {type(first).__name__}")
        check(first.text == FIXTURE_RESOURCE_TEXT, f"{FIXTURE_RESOURCE} text is {first.text!r}")
        rep.ok(uri=str(first.uri), mime_type=first.mime_type, text=first.text)

        rep.begin("close")
    rep.ok()

    # Every POST of the run: the MCP-Protocol-Version header the SDK stamped on it, and whether
    # the gateway ever handed out a session (it does only for initialize).
    posts = [x for x in http.exchanges if x["method"] == "POST"]
    emit(
        {
            "step": "result",
            "ok": True,
            "client": "python",
            "mode": mode,
            "sdk_default_mode": sdk_default,
            "protocol_version": negotiated["protocol_version"],
            "era": negotiated["era"],
            "initialize_sent": "initialize" in [d.get("method") for direction, d in wire.entries if direction == "out"],
            "post_protocol_versions": sorted({str(x["protocol_version"]) for x in posts}),
            "session_id_received": any(x["session_received"] for x in http.exchanges),
            "tools": names,
            "tool_text": text,
            "elicitation_via": via,
            "resource_text": first.text,
        }
    )


SCENARIOS = {"demo": scenario_demo, "everything": scenario_everything, "fixtures": scenario_fixtures}


async def run(args: argparse.Namespace, rep: Reporter) -> None:
    wire = WireLog(trace=args.trace)
    with anyio.fail_after(args.timeout):
        if args.scenario == "fixtures":
            await scenario_fixtures(args.url, args.mode, rep, wire, args.expect_version, args.answer)
        else:
            check(args.expect_version is None, "--expect-version is only for the fixtures scenario")
            check(args.answer == DEFAULT_ANSWER, "--answer is only for the fixtures scenario")
            await SCENARIOS[args.scenario](args.url, args.mode, rep, wire)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="gateway MCP endpoint, e.g. http://127.0.0.1:8080/mcp")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--mode",
        choices=["legacy", "auto", "default"],
        default="legacy",
        help="SDK connect mode: legacy = initialize handshake (default); auto = server/discover probe first;"
        " default = no mode= argument (the SDK's default)",
    )
    parser.add_argument(
        "--expect-version",
        help="fail unless this protocol version is negotiated ('2025' = any 2025 revision); fixtures only",
    )
    parser.add_argument("--answer", default=DEFAULT_ANSWER, help="the name the elicitation callback answers; fixtures only")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="bound for the whole run (s)")
    parser.add_argument("--trace", action="store_true", help="log every JSON-RPC message to stderr")
    args = parser.parse_args()

    rep = Reporter()

    # Backstop: if the event loop itself wedges (e.g. a transport teardown that ignores
    # cancellation), still report and exit shortly after the timeout.
    def on_alarm(signum: int, frame: Any) -> None:
        emit({"step": rep.current, "ok": False, "exception": "HardTimeout",
              "error": f"run did not finish within {args.timeout + 5:.0f}s (event loop wedged)"})
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout) + 5)

    try:
        anyio.run(run, args, rep)
    except BaseException as exc:  # noqa: BLE001 - report anything, including timeouts and groups
        if isinstance(exc, TimeoutError) or any(isinstance(e, TimeoutError) for e in _leaf_exceptions(exc)):
            emit({"step": rep.current, "ok": False, "exception": "TimeoutError",
                  "error": f"run exceeded {args.timeout:g}s during step {rep.current!r}"})
            traceback.print_exception(exc, file=sys.stderr)
        else:
            rep.fail(exc)
        return 1
    finally:
        signal.alarm(0)

    emit({"step": "summary", "ok": True, "scenario": args.scenario, "mode": args.mode, "passed": len(rep.passed)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
