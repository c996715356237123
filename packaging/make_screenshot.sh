#!/usr/bin/env bash
# Refreshes the pictures of the documentation:
#
#   packaging/make_screenshot.sh [BUILD_DIR] [TAB]     docs/screenshot.png (shown in the README): the main window on
#                                                      the bundled demo model after analysis, rendered under Xvfb so
#                                                      it needs no display (defaults: build, preview; TAB: rope,
#                                                      spectra, preview, sanity)
#   packaging/make_screenshot.sh --tour [BUILD_DIR]    docs/images/tour-1280x720-{rope,spectra,preview,sanity,heal}.png
#                                                      (shown in docs/gui.md): runs the self-test offscreen, whose
#                                                      tour saves every tab as an indexed PNG of 256 colours, and
#                                                      copies its 1280x720 pictures; nothing is replaced unless the
#                                                      whole self-test passed
set -euo pipefail
cd "$(dirname "$0")/.."
tour=false
if [ "${1:-}" = "--tour" ]; then
  tour=true
  shift
fi
build=${1:-build}
tab=${2:-preview}
exe="$build/app/mla-workbench"
if [ ! -x "$exe" ]; then
  echo "make_screenshot: $exe not found; build first (cmake -S . -B $build -G Ninja && ninja -C $build mla-workbench)" >&2
  exit 1
fi

if $tour; then
  shots="$build/self-test-tour"
  names=(rope spectra preview sanity heal)
  # Pictures of an earlier run must not pass for this one's.
  for n in "${names[@]}"; do rm -f "$shots/1280x720-$n.png"; done
  # The same fixed font DPI and scale as below; the offscreen platform needs no display and draws with Fusion.
  if ! QT_QPA_PLATFORM=offscreen QT_FONT_DPI=96 QT_SCALE_FACTOR=1 "$exe" -style Fusion --self-test --tour-indexed; then
    echo "make_screenshot: the self-test failed; docs/images left as they were" >&2
    exit 1
  fi
  mkdir -p docs/images
  tmp=()
  trap 'rm -f "${tmp[@]}"' EXIT
  # Every picture is copied to a temporary name first and checked (a PNG whose colour type, byte 25, is 3: indexed),
  # then all are renamed, so that docs/images never holds a half-written picture or a mix of two runs.
  for n in "${names[@]}"; do
    src="$shots/1280x720-$n.png"
    dst="docs/images/.tour-1280x720-$n.png.tmp"
    tmp+=("$dst")
    cp "$src" "$dst"
    if [ "$(od -An -tu1 -j25 -N1 "$dst" | tr -d ' ')" != 3 ]; then
      echo "make_screenshot: $src is not an indexed PNG" >&2
      exit 1
    fi
  done
  for n in "${names[@]}"; do
    mv -f "docs/images/.tour-1280x720-$n.png.tmp" "docs/images/tour-1280x720-$n.png"
    echo "make_screenshot: wrote docs/images/tour-1280x720-$n.png ($(stat -c %s "docs/images/tour-1280x720-$n.png") bytes)"
  done
  tmp=()
  exit 0
fi

command -v xvfb-run > /dev/null || { echo "make_screenshot: xvfb-run not found (apt-get install xvfb xauth)" >&2; exit 1; }
mkdir -p docs
# A fixed screen and font DPI so that the picture does not depend on the machine; the Fusion style looks the same
# everywhere.
QT_QPA_PLATFORM=xcb QT_FONT_DPI=96 QT_SCALE_FACTOR=1 \
  xvfb-run -a -s "-screen 0 1920x1200x24 -dpi 96" \
  "$exe" -style Fusion --screenshot docs/screenshot.png --tab "$tab" --size 1600x1000
echo "make_screenshot: wrote docs/screenshot.png"
