#!/usr/bin/env bash
# The Shadowcat benchmark: mcp-bench against mcp-bench-upstream directly (A) and
# through the gateway (B), interleaved A B A B, for each session count, in two
# scenarios (gateway -> HTTP upstream, gateway -> stdio upstream); plus the gateway's
# idle RSS, RSS per idle session and peak RSS. A third scenario, `pool` (not run by
# default), drives the gateway with stateless (2026-07-28) clients served from its
# pool of sessions of a stdio upstream, for each pool size in POOLS, beside 2025
# sessions through the same gateway. Prints a summary table; the raw JSON
# lines are kept in $OUT. Everything runs on 127.0.0.1, every step is bounded in time,
# and every process started here is stopped on exit (trap). See loadtest/README.md.
#
# Settings (environment):
#   SCENARIOS="http stdio" (add or choose `pool`, or `forward`: forward stdio against
#   a direct pipe, with mcp-bench-pipe)  SESSIONS="1 16"  ROUNDS=3  DURATION=10  WARMUP=2
#   POOLS="1 2 4" (pool scenario: pool.min = pool.max, one fresh gateway per size and
#   round)  POOL_WORKERS=16 (its concurrent stateless clients, and 2025 sessions)
#   UPSTREAM_WORK_US=0 (microseconds each tools/call of the bench upstream spends in a
#   busy loop: 0 is the minimal upstream, about 5 us of CPU per call; 9 stands in for
#   an upstream costing about 14 us, the reference the issue's ratio target assumed)
#   PAYLOAD=32 (echo text bytes)  IDLE_SESSIONS=500  PIPELINE=default|none|record|
#   intercept10|intercept1000 (record: the default stages and `record`, to a directory
#   of its own per gateway; interceptN: the default stages and `intercept` with N
#   rules that never match the bench's calls, each naming another tool)
#   (auth: `auth` with an HMAC issuer before the default stages; every request of
#   every run carries a token for it; edge: `auth`, `policy` and `rate_limit` before
#   the default stages)  FRESH_TOKENS=0 (N: N different tokens taken in turn, so
#   that each request brings a token `auth` has not verified: the cost of a
#   first-seen token)
#   BASELINE_PIPELINE= (default|none|record: the baseline gateway, BASELINE or this
#   build, runs that pipeline; with BASELINE unset this compares two pipelines of
#   this build, such as PIPELINE=record BASELINE_PIPELINE=default for the cost of
#   recording)
#   PIN=1 (load generator on CPU 0, bench upstream on CPU 1, gateway free: without
#   it, whether client and upstream share a CPU decides the direct latency, 13 or
#   87 us at one session on the 2-core VM this was written on)
#   WORKERS=0 (the gateway's server.worker_threads; 0 = one per core)
#   TPC= (the gateway's server.thread_per_core: unset = its default, true; 0: false,
#   one shared multi-threaded runtime; 1: true)
#   BASELINE= (path to another shadowcat binary, an older build: the http and stdio
#   scenarios then run it as a second gateway on the same upstream, right after this
#   build's gateway in every round, and the summary compares their CPU per call round
#   by round; build it in a worktree of the older commit with its own CARGO_TARGET_DIR)
#   BUILD=1 (0: use the release binaries already built)  OUT=FILE  KEEP_LOGS=0
#   QUIET_WAIT=300 QUIET_CORES=0.15 (before each round, wait up to QUIET_WAIT s for
#   the machine's background load to drop under QUIET_CORES cores; rounds that ran
#   beside more are flagged in the table as skewed)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SCENARIOS="${SCENARIOS:-http stdio}"
SESSIONS="${SESSIONS:-1 16}"
POOLS="${POOLS:-1 2 4}"
POOL_WORKERS="${POOL_WORKERS:-16}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PAYLOAD="${PAYLOAD:-32}"
UPSTREAM_WORK_US="${UPSTREAM_WORK_US:-0}"
IDLE_SESSIONS="${IDLE_SESSIONS:-500}"
PIPELINE="${PIPELINE:-default}"
BUILD="${BUILD:-1}"
KEEP_LOGS="${KEEP_LOGS:-0}"
QUIET_WAIT="${QUIET_WAIT:-300}"
QUIET_CORES="${QUIET_CORES:-0.15}"
PIN="${PIN:-1}"
WORKERS="${WORKERS:-0}"
TPC="${TPC:-}"
BASELINE="${BASELINE:-}"
if [[ -n "$BASELINE" && ! -x "$BASELINE" ]]; then
    echo "run.sh: BASELINE must be an executable shadowcat binary (got $BASELINE)" >&2
    exit 2
fi
case "$TPC" in
    "") TPC_YAML="" TPC_LABEL="default (true)" ;;
    1) TPC_YAML="  thread_per_core: true" TPC_LABEL=true ;;
    0) TPC_YAML="  thread_per_core: false" TPC_LABEL=false ;;
    *) echo "run.sh: TPC must be empty, 0 or 1 (got $TPC)" >&2; exit 2 ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"
mkdir -p "$TARGET_DIR/loadtest"
OUT="${OUT:-$TARGET_DIR/loadtest/results-$(date +%Y%m%d-%H%M%S).jsonl}"

for v in ROUNDS DURATION WARMUP PAYLOAD IDLE_SESSIONS QUIET_WAIT WORKERS POOL_WORKERS UPSTREAM_WORK_US; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a whole number (got ${!v})" >&2; exit 2; }
done
for v in $POOLS; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: POOLS must list pool sizes of 1 or more (got $v)" >&2; exit 2; }
done
for v in $SCENARIOS; do
    case "$v" in
        http | stdio | pool | forward) ;;
        *) echo "run.sh: unknown scenario $v (http, stdio, pool, forward)" >&2; exit 2 ;;
    esac
done
BASELINE_PIPELINE="${BASELINE_PIPELINE:-}"
for p in "$PIPELINE" ${BASELINE_PIPELINE:+"$BASELINE_PIPELINE"}; do
    case "$p" in
        default | none | record | intercept10 | intercept1000 | auth | edge) ;;
        *) echo "run.sh: PIPELINE and BASELINE_PIPELINE must be default, none, record, intercept10, intercept1000, auth or edge (got $p)" >&2; exit 2 ;;
    esac
done
# The pipeline YAML of $1 (default|none|record); record writes under $2.
pipeline_yaml() {
    case "$1" in
        default) echo "[metrics, access_log]" ;;
        none) echo "[]" ;;
        record) echo "[metrics, access_log, {record: {dir: $2}}]" ;;
        intercept10) echo "[metrics, access_log, {intercept: {rules: $WORK/rules-10.yaml}}]" ;;
        intercept1000) echo "[metrics, access_log, {intercept: {rules: $WORK/rules-1000.yaml}}]" ;;
        auth) echo "[{auth: {resource: 'http://127.0.0.1/mcp', issuers: [{issuer: bench, secret: {file: $WORK/hmac-secret}}]}}, metrics, access_log]" ;;
        # The production edge: auth (a cached token), Cedar policies, a rate limit per
        # principal and tool that the bench never reaches.
        edge) echo "[{auth: {resource: 'http://127.0.0.1/mcp', issuers: [{issuer: bench, secret: {file: $WORK/hmac-secret}}]}}, {policy: {dir: $WORK/policies}}, {rate_limit: {limits: [{key: [principal, tool], rate: 100000000/s}]}}, metrics, access_log]" ;;
    esac
}

# A rule file of $1 rules that the bench's calls (tools/call echo) never match: each
# names another tool (so the stage's index by method and tool skips them all).
write_rules() {
    local n="$1" i
    {
        echo "version: 1"
        echo "rules:"
        for ((i = 0; i < n; i++)); do
            printf '  - id: other-%s\n    match: { method: tools/call, tool: other-%s }\n    action: { block: { code: -32050 } }\n' "$i" "$i"
        done
    } >"$WORK/rules-$n.yaml"
}

export SHADOWCAT_CLK_TCK
SHADOWCAT_CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

log() { echo "run.sh: $*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/shadowcat-loadtest.XXXXXX")"
STARTED=()
write_rules 10
write_rules 1000
# Policies for the edge pipeline: the bench's principal may list and call echo;
# a forbid on arguments is evaluated on every call (and never applies).
mkdir -p "$WORK/policies"
cat >"$WORK/policies/bench.cedar" <<'CEDAR'
permit (principal == Shadowcat::User::"mcp-bench", action in [Shadowcat::Action::"list_tools", Shadowcat::Action::"call_tool"], resource);
forbid (principal, action == Shadowcat::Action::"call_tool", resource == Shadowcat::Tool::"echo") when { context.arguments has message && context.arguments.message like "DROP*" };
forbid (principal, action, resource) when { principal.groups.contains("blocked") };
CEDAR

# For PIPELINE=auth: an HMAC secret and one HS256 token for it, valid for a day,
# that every mcp-bench request carries (with or without `auth`, so that both sides
# of a comparison send the same bytes; measured: a token cached after its first use).
python3 - "$WORK/hmac-secret" "$WORK/bearer" <<'PY'
import base64, hashlib, hmac, json, os, sys, time
secret = base64.b16encode(os.urandom(32)).decode()
open(sys.argv[1], "w").write(secret)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"iss": "bench", "sub": "mcp-bench", "aud": "http://127.0.0.1/mcp",
                       "exp": int(time.time()) + 86400}).encode())
sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
open(sys.argv[2], "w").write(f"{head}.{body}.{sig}")
# FRESH_TOKENS=N: N different tokens of the same principal (a `jti` each), one per
# line; mcp-bench takes them in turn, so each request brings a token the gateway
# has not verified yet (while N is more than the requests of a run).
n = int(os.environ.get("FRESH_TOKENS", "0") or 0)
if n:
    with open(sys.argv[2], "w") as out:
        for i in range(n):
            body = b64(json.dumps({"iss": "bench", "sub": "mcp-bench", "aud": "http://127.0.0.1/mcp",
                                   "exp": int(time.time()) + 86400, "jti": str(i)}).encode())
            sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
            out.write(f"{head}.{body}.{sig}\n")
PY

stop_pid() { # PID: SIGTERM, up to 5 s, then SIGKILL; then forget it (pids get reused)
    local pid="$1" i kept=() p
    for p in "${STARTED[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
    STARTED=("${kept[@]}")
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    if [[ "$KEEP_LOGS" == 1 ]]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most 20 s) for a line starting with $2 in file $1 written by process $3;
# prints the rest of the line.
wait_for_line() {
    local file="$1" prefix="$2" pid="$3" i line
    for ((i = 0; i < 200; i++)); do
        line="$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then echo "${line#"$prefix"}"; return 0; fi
        kill -0 "$pid" 2>/dev/null || { log "process $pid exited early:"; tail -5 "$file" >&2; return 1; }
        sleep 0.1
    done
    log "no '$prefix' line from $pid within 20 s"
    return 1
}

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

if [[ "$BUILD" == 1 ]]; then
    log "building release binaries (once; about 6 min from clean on 2 cores)"
    cargo build --release -p shadowcat -p shadowcat-loadtest
fi
for b in shadowcat mcp-bench mcp-bench-upstream; do
    [[ -x "$BIN/$b" ]] || { log "$BIN/$b missing: run with BUILD=1"; exit 1; }
done

# Machine CPU busy over one second, in cores (from /proc/stat), while none of our
# processes run: other engineers' builds and tests share these 2 cores.
background_cores() {
    local b1 t1 b2 t2
    read -r b1 t1 < <(awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat)
    sleep 1
    read -r b2 t2 < <(awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat)
    awk -v b="$((b2 - b1))" -v t="$((t2 - t1))" -v n="$(nproc)" 'BEGIN { printf "%.2f", (t > 0 ? b / t * n : 0) }'
}

# Waits (at most QUIET_WAIT s) until the background load is under QUIET_CORES;
# prints the last background load measured.
wait_quiet() {
    local waited=0 load
    load="$(background_cores)"
    while awk -v l="$load" -v q="$QUIET_CORES" 'BEGIN { exit !(l > q) }' && ((waited < QUIET_WAIT)); do
        ((waited == 0)) && log "background load ${load} cores: waiting up to ${QUIET_WAIT}s for it to drop under $QUIET_CORES"
        sleep 4
        waited=$((waited + 5))
        load="$(background_cores)"
    done
    awk -v l="$load" -v q="$QUIET_CORES" 'BEGIN { exit !(l > q) }' &&
        log "warning: background load still ${load} cores; this round is flagged as skewed"
    echo "$load"
}

log "load average: $(cut -d' ' -f1-3 /proc/loadavg); background load $(background_cores) cores; results go to $OUT"

# Upper bound on the whole run (quiet waits included), for the upstream's own exit timer.
n_sessions=$(wc -w <<<"$SESSIONS")
n_pools=$(wc -w <<<"$POOLS")
((n_pools > n_sessions)) && n_sessions=$n_pools
n_scenarios=$(wc -w <<<"$SCENARIOS")
runs_per_round=2
[[ -n "$BASELINE" ]] && runs_per_round=3
LIFETIME=$(((ROUNDS * n_sessions * (runs_per_round * (DURATION + WARMUP + 20) + QUIET_WAIT + 5) + 300) * n_scenarios + 300))

CLIENT_PIN=()
UPSTREAM_PIN=()
if [[ "$PIN" == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    CLIENT_PIN=(taskset -c 0)
    UPSTREAM_PIN=(taskset -c 1)
fi

"${UPSTREAM_PIN[@]}" "$BIN/mcp-bench-upstream" --listen 127.0.0.1:0 --exit-after "$LIFETIME" --work-us "$UPSTREAM_WORK_US" 2>"$WORK/upstream.log" &
UPSTREAM_PID=$!
STARTED+=("$UPSTREAM_PID")
UPSTREAM_URL="$(wait_for_line "$WORK/upstream.log" "mcp-bench-upstream listening: " "$UPSTREAM_PID")"
log "bench upstream: $UPSTREAM_URL (pid $UPSTREAM_PID)"

# Writes the gateway config of scenario $1 to stdout (`pool`: pool size $POOL_SIZE;
# era pinned to legacy, so no server/discover probe, which would be a one-time cost).
gateway_config() {
    cat <<EOF
server:
  listen: 127.0.0.1:0
  shutdown_grace: 2s
  worker_threads: $WORKERS
  # One load generator opens every session (IDLE_SESSIONS of them): no per-client bound.
  max_sessions_per_client: 0
$TPC_YAML
admin:
  listen: null
pipeline: $(pipeline_yaml "${GW_PIPELINE:-$PIPELINE}" "${GW_TAPES:-$WORK/tapes}")
upstreams:
  bench:
EOF
    case "$1" in
        http) printf '    http:\n      url: %s\n      max_sessions: 100000\n' "$UPSTREAM_URL" ;;
        stdio) printf '    stdio:\n      command: %s\n      args: [--stdio, --work-us, "%s"]\n      max_sessions: 100000\n' "$BIN/mcp-bench-upstream" "$UPSTREAM_WORK_US" ;;
        pool)
            printf '    stdio:\n      command: %s\n      args: [--stdio]\n      max_sessions: 100000\n' "$BIN/mcp-bench-upstream"
            printf '      era: legacy\n      pool: {min: %s, max: %s, idle_timeout: 5m}\n' "$POOL_SIZE" "$POOL_SIZE"
            ;;
    esac
}

# Starts the gateway for scenario $1; sets GATEWAY_PID and GATEWAY_URL.
start_gateway() {
    local scenario="$1" log_file="$WORK/gateway-$1-$RANDOM.log"
    GATEWAY_TAPES="$WORK/tapes-gateway-$RANDOM"
    GW_TAPES="$GATEWAY_TAPES" gateway_config "$scenario" >"$WORK/gateway-$scenario.yaml"
    "$BIN/shadowcat" gateway --config "$WORK/gateway-$scenario.yaml" 2>"$log_file" &
    GATEWAY_PID=$!
    STARTED+=("$GATEWAY_PID")
    GATEWAY_URL="$(wait_for_line "$log_file" "shadowcat listening: mcp=" "$GATEWAY_PID")" || return 1
    GATEWAY_URL="${GATEWAY_URL%% *}"
}

# Starts the BASELINE gateway for scenario $1; sets BASELINE_PID and BASELINE_URL. A
# build older than a config key this script sets rejects it: the key is then left out.
start_baseline() {
    local scenario="$1" log_file="$WORK/baseline-$1-$RANDOM.log" cfg="$WORK/baseline-$1.yaml" bin="${BASELINE:-$BIN/shadowcat}"
    BASELINE_TAPES="$WORK/tapes-baseline-$RANDOM"
    GW_PIPELINE="${BASELINE_PIPELINE:-$PIPELINE}" GW_TAPES="$BASELINE_TAPES" gateway_config "$scenario" >"$cfg"
    if ! "$bin" config validate "$cfg" >/dev/null 2>&1; then
        grep -v 'max_sessions_per_client' "$cfg" >"$cfg.old" && mv "$cfg.old" "$cfg"
    fi
    "$bin" gateway --config "$cfg" 2>"$log_file" &
    BASELINE_PID=$!
    STARTED+=("$BASELINE_PID")
    BASELINE_URL="$(wait_for_line "$log_file" "shadowcat listening: mcp=" "$BASELINE_PID")" || return 1
    BASELINE_URL="${BASELINE_URL%% *}"
}

bench() { # mcp-bench with a hard time bound on top of its own
    timeout --kill-after=5 "$((DURATION + WARMUP + 120))" "${CLIENT_PIN[@]}" "$BIN/mcp-bench" --payload-bytes "$PAYLOAD" --bearer-file "$WORK/bearer" "$@"
}

# The pool scenario: per round, per pool size, a fresh gateway whose only upstream is
# mcp-bench-upstream --stdio with pool.min = pool.max = the size; POOL_WORKERS
# stateless clients (their first calls open the pool, before the warm-up), then as
# many 2025 sessions (one upstream process each, outside the pool) for reference.
run_pool_scenario() {
    local round size background common watch
    for ((round = 1; round <= ROUNDS; round++)); do
        for size in $POOLS; do
            background="$(wait_quiet)"
            POOL_SIZE="$size"
            if ! start_gateway pool; then
                log "pool $size: the gateway did not start (see above); skipped"
                stop_pid "$GATEWAY_PID"
                continue
            fi
            common=(--sessions "$POOL_WORKERS" --duration "$DURATION" --warmup "$WARMUP" --label scenario=pool
                --label "round=$round" --label "pool=$size" --label "background=$background")
            watch=(--watch "gateway=$GATEWAY_PID" --watch-children "upstream=$GATEWAY_PID")
            log "round $round/$ROUNDS, pool $size: $POOL_WORKERS stateless clients"
            bench --url "$GATEWAY_URL" --stateless "${common[@]}" --label target=stateless "${watch[@]}" \
                >>"$OUT" || log "stateless run failed"
            log "round $round/$ROUNDS, pool $size: $POOL_WORKERS sessions (2025 clients), same gateway"
            bench --url "$GATEWAY_URL" "${common[@]}" --label target=session "${watch[@]}" \
                >>"$OUT" || log "session run failed"
            stop_pid "$GATEWAY_PID"
        done
    done
}

FORWARD_TABLE=""
for scenario in $SCENARIOS; do
    log "== scenario $scenario"
    if [[ "$scenario" == pool ]]; then
        run_pool_scenario
        continue
    fi
    if [[ "$scenario" == forward ]]; then
        # forward stdio against a direct pipe to mcp-bench-upstream --stdio (no gateway
        # listener; the driver interleaves the rounds itself).
        wait_quiet >/dev/null
        FORWARD_TABLE="$(timeout $((ROUNDS * 2 * 2 * (DURATION + WARMUP + 10) + 30)) "$BIN/mcp-bench-pipe" \
            --shadowcat "$BIN/shadowcat" --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" \
            --payload-bytes "$PAYLOAD" --out "$OUT" -- "$BIN/mcp-bench-upstream" --stdio | grep '^|')" \
            || log "forward scenario failed"
        continue
    fi
    # Memory: a fresh gateway per measurement, so freed memory from earlier work
    # does not hide what sessions cost.
    if ! start_gateway "$scenario"; then
        log "scenario $scenario: the gateway did not start (see above); skipped"
        stop_pid "$GATEWAY_PID"
        continue
    fi
    sleep 1
    idle_kib="$(status_kib "$GATEWAY_PID" VmRSS)"
    log "gateway idle RSS: ${idle_kib} KiB"
    bench --url "$GATEWAY_URL" --idle-sessions "$IDLE_SESSIONS" --hold 2 --watch "gateway=$GATEWAY_PID" \
        --label "scenario=$scenario" >>"$OUT" || log "idle run failed (connections open)"
    stop_pid "$GATEWAY_PID"
    start_gateway "$scenario"
    bench --url "$GATEWAY_URL" --idle-sessions "$IDLE_SESSIONS" --hold 2 --drop-connections \
        --watch "gateway=$GATEWAY_PID" --label "scenario=$scenario" >>"$OUT" || log "idle run failed (connections closed)"
    stop_pid "$GATEWAY_PID"

    start_gateway "$scenario"
    log "gateway: $GATEWAY_URL (pid $GATEWAY_PID)"
    BASELINE_PID=""
    if [[ -n "$BASELINE" || -n "$BASELINE_PIPELINE" ]]; then
        if start_baseline "$scenario"; then
            log "baseline gateway (${BASELINE:-this build}, pipeline ${BASELINE_PIPELINE:-$PIPELINE}): $BASELINE_URL (pid $BASELINE_PID)"
        else
            log "scenario $scenario: the baseline gateway did not start (see above); no baseline rounds"
            stop_pid "$BASELINE_PID"
            BASELINE_PID=""
        fi
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        for n in $SESSIONS; do
            background="$(wait_quiet)"
            common=(--sessions "$n" --duration "$DURATION" --warmup "$WARMUP" --label "scenario=$scenario"
                --label "round=$round" --label "background=$background")
            log "round $round/$ROUNDS, $n session(s): direct"
            bench --url "$UPSTREAM_URL" "${common[@]}" --label target=direct --watch "upstream=$UPSTREAM_PID" \
                >>"$OUT" || log "direct run failed"
            log "round $round/$ROUNDS, $n session(s): through the gateway"
            watch=(--watch "gateway=$GATEWAY_PID")
            [[ "$scenario" == http ]] && watch+=(--watch "upstream=$UPSTREAM_PID")
            bench --url "$GATEWAY_URL" "${common[@]}" --label target=gateway "${watch[@]}" \
                >>"$OUT" || log "gateway run failed"
            if [[ -n "$BASELINE_PID" ]]; then
                log "round $round/$ROUNDS, $n session(s): through the baseline gateway"
                bench --url "$BASELINE_URL" "${common[@]}" --label target=baseline --watch "gateway=$BASELINE_PID" \
                    >>"$OUT" || log "baseline run failed"
            fi
        done
    done
    if [[ -n "$BASELINE_PID" ]]; then stop_pid "$BASELINE_PID"; fi
    peak_kib="$(status_kib "$GATEWAY_PID" VmHWM)"
    printf '{"mode":"rss","idle_kib":%s,"peak_kib":%s,"labels":{"scenario":"%s"}}\n' \
        "${idle_kib:-null}" "${peak_kib:-null}" "$scenario" >>"$OUT"
    stop_pid "$GATEWAY_PID"
    # Frames recorded against what the load generator saw (SIGTERM closed the tapes).
    for pair in "gateway:$GATEWAY_TAPES" "baseline:${BASELINE_TAPES:-}"; do
        target="${pair%%:*}" tapes_dir="${pair#*:}"
        [[ -n "$tapes_dir" && -d "$tapes_dir" ]] || continue
        "$BIN/shadowcat" tape stats --dir "$tapes_dir" --json >"$WORK/stats.json" 2>/dev/null || continue
        python3 - "$OUT" "$scenario" "$target" "$WORK/stats.json" "$tapes_dir" >>"$OUT" <<'PY'
import glob, json, sys
out, scenario, target, stats, tapes = sys.argv[1:6]
expected = 0
for line in open(out):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    l = r.get("labels", {})
    if r.get("mode") == "load" and l.get("scenario") == scenario and l.get("target") == target:
        # each call: the request and its answer; each session: initialize, its answer, initialized
        expected += 2 * r.get("calls_total", 0) + 3 * r.get("sessions", 0)
dropped = 0
for f in glob.glob(tapes + "/*.tape.jsonl"):
    last = open(f).read().splitlines()[-1:]
    if last:
        dropped += json.loads(last[0]).get("dropped", 0)
frames = json.load(open(stats))["frames"]
print(json.dumps({"mode": "record", "frames": frames, "expected": expected, "dropped": dropped,
                  "labels": {"scenario": scenario, "target": target}}))
PY
    done
done

echo
pinning="client on CPU 0, upstream on CPU 1, gateway unpinned"
((${#CLIENT_PIN[@]})) || pinning="nothing pinned"
pools=""
[[ " $SCENARIOS " == *" pool "* ]] && pools=", pool scenario: $POOL_WORKERS clients, pool sizes $POOLS"
echo "# Shadowcat benchmark ($(nproc) cores, pipeline: $PIPELINE, gateway worker_threads: $WORKERS, thread_per_core: $TPC_LABEL, upstream work per call: ${UPSTREAM_WORK_US} us, $pinning$pools, $(date -u +%Y-%m-%dT%H:%MZ))"
"$BIN/mcp-bench" --report "$OUT"
if [[ -n "$FORWARD_TABLE" ]]; then
    echo
    echo "forward stdio -- mcp-bench-upstream --stdio against a direct pipe (tools/call echo, medians of $ROUNDS rounds):"
    echo
    echo "$FORWARD_TABLE"
fi
echo
echo "raw results: $OUT"
