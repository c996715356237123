#!/usr/bin/env bash
# Refreshes docs/screenshot.png (shown in the README): the main window on the bundled demo model after analysis,
# rendered under Xvfb so it needs no display.
#
#   packaging/make_screenshot.sh [BUILD_DIR] [TAB]     (defaults: build, preview; TAB: rope, spectra, preview, sanity)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tab=${2:-preview}
exe="$build/app/mla-workbench"
if [ ! -x "$exe" ]; then
  echo "make_screenshot: $exe not found; build first (cmake -S . -B $build -G Ninja && ninja -C $build mla-workbench)" >&2
  exit 1
fi
command -v xvfb-run > /dev/null || { echo "make_screenshot: xvfb-run not found (apt-get install xvfb xauth)" >&2; exit 1; }
mkdir -p docs
# A fixed screen and font DPI so that the picture does not depend on the machine; the Fusion style looks the same
# everywhere.
QT_QPA_PLATFORM=xcb QT_FONT_DPI=96 QT_SCALE_FACTOR=1 \
  xvfb-run -a -s "-screen 0 1920x1200x24 -dpi 96" \
  "$exe" -style Fusion --screenshot docs/screenshot.png --tab "$tab" --size 1600x1000
echo "make_screenshot: wrote docs/screenshot.png"
