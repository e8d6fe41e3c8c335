#!/usr/bin/env python3
"""The official Python MCP SDK calling tools one after another, for the interception tests.

Usage: intercept_client.py [--mode legacy|default] --calls JSON (URL | -- COMMAND [ARGS...])

JSON is a list of [tool, arguments]; the tool "__list_tools__" lists the tools instead
({"tool": "__list_tools__", "ok": true, "tools": [names]}). Connects to URL (Streamable HTTP) or launches
COMMAND (stdio), then calls each tool in order and prints one JSON line per call:
{"tool": ..., "ok": true, "text": [...], "is_error": false, "logs": N} or
{"tool": ..., "ok": false, "error": {"code": ..., "message": ...}, "logs": N}, where
logs counts the log messages (notifications/message) that arrived during the call. The
client declines every elicitation it is asked for.
Exit 0 when every line was printed, 1 when the client itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.client import Client, ClientRequestContext
from mcp.client.stdio import StdioServerParameters


async def run(target: Any, mode: str, calls: list[list[Any]]) -> None:
    logs: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def on_elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    mode_arg: dict[str, Any] = {} if mode == "default" else {"mode": mode}
    async with Client(target, cache=None, logging_callback=on_log, elicitation_callback=on_elicit, **mode_arg) as client:
        for tool, arguments in calls:
            before = len(logs)
            line: dict[str, Any] = {"tool": tool}
            if tool == "__list_tools__":
                listed = await client.list_tools()
                line |= {"ok": True, "tools": [t.name for t in listed.tools]}
                print(json.dumps(line), flush=True)
                continue
            try:
                result = await client.call_tool(tool, arguments)
                texts = [b.text for b in result.content if isinstance(b, types.TextContent)]
                line |= {"ok": True, "text": texts, "is_error": bool(result.is_error)}
            except Exception as exc:  # noqa: BLE001 - the JSON-RPC error is what the test looks at
                error = getattr(exc, "error", None)
                if isinstance(error, types.ErrorData):
                    line |= {"ok": False, "error": {"code": error.code, "message": error.message}}
                else:
                    line |= {"ok": False, "error": {"code": None, "message": f"{type(exc).__name__}: {exc}"}}
            await anyio.sleep(0.05)  # a log message sent just before the result
            line["logs"] = len(logs) - before
            print(json.dumps(line), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="legacy", choices=["legacy", "default"])
    parser.add_argument("--calls", required=True)
    parser.add_argument("target", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    rest = args.target[1:] if args.target[:1] == ["--"] else args.target
    if not rest:
        parser.error("give a URL or -- COMMAND")
    target: Any = rest[0] if rest[0].startswith("http") and len(rest) == 1 else StdioServerParameters(
        command=rest[0], args=rest[1:]
    )

    async def bounded() -> None:
        with anyio.fail_after(60):
            await run(target, args.mode, json.loads(args.calls))

    try:
        anyio.run(bounded)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        print(json.dumps({"client_failed": repr(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
