#!/usr/bin/env bash
# Renders the PNG sizes of the application icon from the SVG (needs rsvg-convert from librsvg2-bin). The PNGs are
# committed, so building and packaging need no SVG renderer; run this after changing the SVG.
set -euo pipefail
cd "$(dirname "$0")"
name=org.mlaworkbench.MlaWorkbench
for size in 16 24 32 48 64 128 256 512; do
  rsvg-convert --width "$size" --height "$size" "$name.svg" --output "$name-$size.png"
done
ls -l "$name"-*.png
