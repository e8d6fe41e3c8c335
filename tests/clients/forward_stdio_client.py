#!/usr/bin/env python3
"""The official Python MCP SDK's stdio client launching ``shadowcat forward stdio -- ...``.

Usage: forward_stdio_client.py [--mode legacy|default] -- COMMAND [ARGS...]

Lists the tools, calls ``slow`` (when listed) with a progress callback and
``test_input_required_result_elicitation`` with an elicitation callback that answers
"Ada", and prints one JSON line: {"ok": true, "protocol_version": ..., "tools": [...],
"progress": [...], "elicited": "..."} (exit 0), or {"ok": false, "error": ...} (exit 1).
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


async def run(mode: str, command: list[str]) -> dict[str, Any]:
    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    mode_arg: dict[str, Any] = {} if mode == "default" else {"mode": mode}
    server = StdioServerParameters(command=command[0], args=command[1:])
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(server, elicitation_callback=elicitation, cache=None, **mode_arg) as client:
        tools = await client.list_tools()
        names = sorted(t.name for t in tools.tools)
        text = lambda r: [b.text for b in r.content if isinstance(b, types.TextContent)]  # noqa: E731
        slow: list[str] = []
        if "slow" in names:
            slow = text(await client.call_tool("slow", {"steps": 3, "delay_ms": 20}, progress_callback=on_progress))
            with anyio.move_on_after(2):
                while len(seen) < 3:
                    await anyio.sleep(0.05)
        elicited = await client.call_tool("test_input_required_result_elicitation", {})
        return {
            "ok": True,
            "protocol_version": client.protocol_version,
            "tools": names,
            "slow": slow,
            "progress": seen,
            "elicited": text(elicited),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="legacy", choices=["legacy", "default"])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(60):
            return await run(args.mode, command)

    try:
        result = anyio.run(bounded)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        print(json.dumps({"ok": False, "error": repr(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
