#!/usr/bin/env bash
# Installs what the tests need into one folder (default .test-deps/), from the
# package registries only: node >= 22 (npm package node-linux-<arch> when the
# machine's node is older), the MCP conformance suite, the reference server and an
# OpenID provider (npm), and the official Python SDK in a virtualenv (PyPI). Idempotent.
set -euo pipefail
DEPS="${1:-$(cd "$(dirname "$0")/.." && pwd)/.test-deps}"
mkdir -p "$DEPS"
log() { printf 'install-test-deps: %s\n' "$*" >&2; }

CONFORMANCE_VERSION=0.1.16
# The 2026-07-28 scenarios live in the 0.2 pre-releases; installed under an alias
# beside 0.1.16 (which the 2025 suites keep using).
CONFORMANCE_NEXT_VERSION=0.2.0-alpha.12
# TypeScript SDK v2: a modern (2026-07-28) upstream fixture and a real modern client.
TS_SDK_VERSION=2.4.0
EVERYTHING_VERSION=2026.8.31
NODE22_VERSION=22.23.3
PY_MCP_VERSION=2.3.0
# A real OpenID provider (OpenID certified) for the `auth` tests.
OIDC_PROVIDER_VERSION=9.13.3

# --- node >= 22 -----------------------------------------------------------------
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
NODE=""
if command -v node >/dev/null 2>&1 && [ "$(node_major node)" -ge 22 ]; then
  NODE="$(command -v node)"
else
  case "$(uname -m)" in
    x86_64|amd64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) log "unsupported architecture $(uname -m)"; exit 2 ;;
  esac
  NODE="$DEPS/node22/node_modules/node-linux-$arch/bin/node"
  if [ ! -x "$NODE" ]; then
    log "installing node-linux-$arch@$NODE22_VERSION"
    mkdir -p "$DEPS/node22"
    (cd "$DEPS/node22" && [ -f package.json ] || echo '{"private":true}' > package.json)
    (cd "$DEPS/node22" && npm install --no-audit --no-fund --loglevel=error "node-linux-$arch@$NODE22_VERSION" >&2)
  fi
fi
"$NODE" --version >/dev/null

# --- npm packages -----------------------------------------------------------------
NPM_DIR="$DEPS/npm"
mkdir -p "$NPM_DIR"
[ -f "$NPM_DIR/package.json" ] || echo '{"private":true}' > "$NPM_DIR/package.json"
have_version() { sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NPM_DIR/node_modules/$1/package.json" 2>/dev/null | head -1; }
want=()
[ "$(have_version @modelcontextprotocol/conformance)" = "$CONFORMANCE_VERSION" ] || want+=("@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
[ "$(have_version @modelcontextprotocol/server-everything)" = "$EVERYTHING_VERSION" ] || want+=("@modelcontextprotocol/server-everything@$EVERYTHING_VERSION")
[ "$(have_version conformance-next)" = "$CONFORMANCE_NEXT_VERSION" ] || want+=("conformance-next@npm:@modelcontextprotocol/conformance@$CONFORMANCE_NEXT_VERSION")
[ "$(have_version @modelcontextprotocol/server)" = "$TS_SDK_VERSION" ] || want+=("@modelcontextprotocol/server@$TS_SDK_VERSION")
[ "$(have_version @modelcontextprotocol/client)" = "$TS_SDK_VERSION" ] || want+=("@modelcontextprotocol/client@$TS_SDK_VERSION")
[ "$(have_version oidc-provider)" = "$OIDC_PROVIDER_VERSION" ] || want+=("oidc-provider@$OIDC_PROVIDER_VERSION")
if [ "${#want[@]}" -gt 0 ]; then
  log "installing ${want[*]}"
  (cd "$NPM_DIR" && npm install --save-exact --no-audit --no-fund --loglevel=error "${want[@]}" >&2)
fi

# --- Python SDK -------------------------------------------------------------------
VENV="$DEPS/venv"
if ! "$VENV/bin/python" -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$PY_MCP_VERSION'" 2>/dev/null; then
  log "installing Python mcp==$PY_MCP_VERSION"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "mcp==$PY_MCP_VERSION" >&2
fi

# --- what the tests read ----------------------------------------------------------
cat > "$DEPS/env" <<ENV
SHADOWCAT_NODE=$NODE
SHADOWCAT_CONFORMANCE_JS=$NPM_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js
SHADOWCAT_CONFORMANCE_NEXT_JS=$NPM_DIR/node_modules/conformance-next/dist/index.js
SHADOWCAT_NODE_MODULES=$NPM_DIR/node_modules
SHADOWCAT_EVERYTHING_JS=$NPM_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js
SHADOWCAT_PYTHON=$VENV/bin/python
ENV
log "ready in $DEPS"
