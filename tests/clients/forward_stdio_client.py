#!/usr/bin/env python3
"""The official Python MCP SDK's stdio client launching ``shadowcat forward stdio -- ...``.

Usage: forward_stdio_client.py [--mode legacy|default] [--sampling] -- COMMAND [ARGS...]

Lists the tools, calls one that sends progress with a progress callback and one that
elicits with an elicitation callback that answers "Ada", and prints one JSON line:
{"ok": true, "protocol_version": ..., "tools": [...], "slow": [...], "progress": [...],
"elicited": [...]} (exit 0), or {"ok": false, "error": ...} (exit 1).

The tools, by the server's catalogue: Shadowcat's demo server (``slow`` and
``test_input_required_result_elicitation``; a server without ``slow`` gets no progress call) or the reference server-everything
(``trigger-long-running-operation`` and ``trigger-elicitation-request``). With
``--sampling`` the client also declares sampling and roots and calls server-everything's
``trigger-sampling-request`` and ``get-roots-list`` ("sampled", "roots" in the line).
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


async def run(mode: str, sample: bool, command: list[str]) -> dict[str, Any]:
    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked = [m.content.text for m in params.messages if isinstance(m.content, types.TextContent)]
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"sampled {asked}"), model="test-model"
        )

    async def roots(context: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    mode_arg: dict[str, Any] = {} if mode == "default" else {"mode": mode}
    server = StdioServerParameters(command=command[0], args=command[1:])
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    callbacks: dict[str, Any] = {"elicitation_callback": elicitation}
    if sample:
        callbacks |= {"sampling_callback": sampling, "list_roots_callback": roots}
    async with Client(server, cache=None, **callbacks, **mode_arg) as client:
        tools = await client.list_tools()
        names = sorted(t.name for t in tools.tools)
        text = lambda r: [b.text for b in r.content if isinstance(b, types.TextContent)]  # noqa: E731
        progress_tool, progress_args = "slow", {"steps": 3, "delay_ms": 20}
        elicit_tool = "test_input_required_result_elicitation"
        if "trigger-long-running-operation" in names:
            progress_tool, progress_args = "trigger-long-running-operation", {"duration": 0.3, "steps": 3}
            elicit_tool = "trigger-elicitation-request"
        slow: list[str] = []
        if progress_tool in names:
            slow = text(await client.call_tool(progress_tool, progress_args, progress_callback=on_progress))
            with anyio.move_on_after(2):
                while len(seen) < 3:
                    await anyio.sleep(0.05)
        elicited = await client.call_tool(elicit_tool, {})
        extra: dict[str, Any] = {}
        if sample:
            extra["sampled"] = text(await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10}))
            extra["roots"] = text(await client.call_tool("get-roots-list", {}))
        return {
            "ok": True,
            "protocol_version": client.protocol_version,
            "tools": names,
            "slow": slow,
            "progress": seen,
            "elicited": text(elicited),
            **extra,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="legacy", choices=["legacy", "default"])
    parser.add_argument("--sampling", action="store_true", help="also answer sampling and roots (server-everything)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(60):
            return await run(args.mode, args.sampling, command)

    try:
        result = anyio.run(bounded)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        print(json.dumps({"ok": False, "error": repr(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
