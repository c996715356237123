#!/usr/bin/env bash
# Installs everything MLA Workbench needs to build, test and run on Debian 12 (bookworm).
# Idempotent: when every package is already present it returns in about a second without touching apt.
# clang-14, its sanitizer/libFuzzer runtimes and libomp build the sanitizer and fuzzing tree of .ci/run; file (for
# CPack's dependency scan), appstream and desktop-file-utils check the Debian package and its desktop metadata.
# python3-torch (CPU) runs the tests of an export's PyTorch side (resources/modeling_mla.py, the recovery recipe; the
# product builds and runs without it), libopenblas0-pthread gives it a fast BLAS (the tests load it through
# LD_LIBRARY_PATH; on a fresh machine Debian also makes it the default BLAS).
# npm (Debian's, unless a node with its own npm is already there) installs the real llama.cpp for the GGUF export
# checks from the npm registry, pinned by the lock files in tests/llama_cpp (tests/llama_cpp/install.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

packages=(
  build-essential cmake ninja-build pkg-config
  qt6-base-dev qt6-base-dev-tools libgl-dev libqcustomplot-dev
  libeigen3-dev libhdf5-dev nlohmann-json3-dev libsentencepiece-dev libpcre2-dev
  python3 python3-numpy python3-h5py time
  xvfb xauth fonts-dejavu-core
  clang-14 libclang-rt-14-dev libomp-14-dev
  file appstream desktop-file-utils
  python3-torch libopenblas0-pthread
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ! command -v npm > /dev/null 2>&1; then
  missing+=(npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already present"
  "$here/../tests/llama_cpp/install.sh"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
"$here/../tests/llama_cpp/install.sh"
