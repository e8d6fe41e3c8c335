#!/usr/bin/env bash
# The tape index at scale: N (default 10000) small tapes are written (each: a session
# with initialize, tools/list and two tools/call, a whole trailer), imported with
# `shadowcat tape import`, then listed and searched; prints the time each took.
# Usage: loadtest/tape-index.sh [N]   (BIN=path/to/shadowcat, default target/release, else target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
[[ "$N" =~ ^[0-9]+$ ]] || { echo "tape-index.sh: N must be a whole number" >&2; exit 2; }
BIN="${BIN:-target/release/shadowcat}"
[[ -x "$BIN" ]] || BIN=target/debug/shadowcat
[[ -x "$BIN" ]] || { echo "tape-index.sh: build shadowcat first (cargo build --release)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/shadowcat-tape-index.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/src" "$N" <<'PY'
import hashlib, json, os, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
tools = ["echo", "add", "search", "fetch", "summarize"]
for i in range(n):
    tid = f"20261202T{(i // 3600) % 24:02d}{(i // 60) % 60:02d}{i % 60:02d}Z-{i:08x}"
    at = f"2026-12-02T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000000Z"
    header = {"type": "header", "format": "shadowcat-tape", "version": 1, "tape": tid, "started_at": at,
              "shadowcat": "bench", "mode": "gateway", "side": "client", "route": "/mcp", "upstream": "bench",
              "session": f"{i:08x}", "client": {"info": {"name": "bench", "version": "1"}}, "revisions": ["2025-11-25"]}
    msgs = [("c2s", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}),
            ("s2c", {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-11-25"}}),
            ("c2s", {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tools[i % 5], "arguments": {}}}),
            ("s2c", {"jsonrpc": "2.0", "id": 2, "result": {"content": []}} if i % 7 else {"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "bad"}}),
            ("c2s", {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tools[(i + 1) % 5], "arguments": {}}}),
            ("s2c", {"jsonrpc": "2.0", "id": 3, "result": {"content": []}})]
    lines = [json.dumps(header, separators=(",", ":"))]
    for seq, (d, m) in enumerate(msgs, 1):
        f = {"type": "frame", "seq": seq, "t_us": seq * 1000, "at": at, "dir": d, "side": "client", "call": (seq + 1) // 2,
             "carrier": "request" if d == "c2s" else "reply", "msg": m}
        lines.append(json.dumps(f, separators=(",", ":")))
    body = "".join(l + "\n" for l in lines)
    t = {"type": "trailer", "ended_at": at, "reason": "session_ended", "frames": len(msgs), "dropped": 0, "redacted": 0,
         "checksum": "sha256:" + hashlib.sha256(body.encode()).hexdigest()}
    with open(os.path.join(out, tid + ".tape.jsonl"), "w") as fh:
        fh.write(body + json.dumps(t, separators=(",", ":")) + "\n")
PY
timed() { # label, command...: prints the seconds the command took
    local label="$1" start end
    shift
    start=$(date +%s.%N)
    "$@" >"$WORK/out" 2>"$WORK/err" || { echo "tape-index.sh: $label failed:" >&2; tail -3 "$WORK/err" >&2; exit 1; }
    end=$(date +%s.%N)
    printf '| %s | %.3f s |\n' "$label" "$(echo "$end - $start" | bc)"
}
echo "| $N tapes ($BIN) | time |"
echo "|---|---|"
timed "tape import (all, one command)" bash -c "find '$WORK/src' -name '*.tape.jsonl' -print0 | xargs -0 '$BIN' tape import --dir '$WORK/lib'"
timed "tape list (all, JSON)" "$BIN" tape list --dir "$WORK/lib" --json
[[ "$(python3 -c "import json,sys; print(len(json.load(open('$WORK/out'))))")" == "$N" ]] || { echo "tape-index.sh: list did not return $N tapes" >&2; exit 1; }
timed "tape list --tool search" "$BIN" tape list --dir "$WORK/lib" --tool search --json
timed "tape list --errors --method tools/call" "$BIN" tape list --dir "$WORK/lib" --errors --method tools/call --json
timed "tape list --session <one>" "$BIN" tape list --dir "$WORK/lib" --session 00000fff --json
timed "tape stats" "$BIN" tape stats --dir "$WORK/lib"
