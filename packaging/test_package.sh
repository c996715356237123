#!/usr/bin/env bash
# CTest packaging/deb: builds the Debian package of the finished build with CPack, unpacks it into a scratch root
# with dpkg -x (nothing is installed on the machine, no root needed) and checks what a user gets: the file layout, the
# package's dependencies and version, and that the unpacked CLI runs the unpacked demo model.
#   test_package.sh BUILD_DIR SCRATCH_DIR APP_ID gui|nogui
set -euo pipefail
build=$1 scratch=$2 app_id=$3 gui=$4
fail() { echo "packaging/deb: $*" >&2; exit 1; }

rm -rf "$scratch"
mkdir -p "$scratch"
if ! (cd "$build" && cpack -G DEB -B "$scratch/package") > "$scratch/cpack.log" 2>&1; then
  cat "$scratch/cpack.log" >&2
  fail "cpack failed"
fi
debs=("$scratch"/package/*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || fail "expected one .deb, found: ${debs[*]}"
deb=${debs[0]}
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

root=$scratch/root
dpkg -x "$deb" "$root"
expected=(usr/bin/mla-workbench-cli usr/share/mla-workbench/demo/stories260K.bin usr/share/mla-workbench/demo/tok512.bin)
if [ "$gui" = gui ]; then
  expected+=(usr/bin/mla-workbench "usr/share/applications/$app_id.desktop" "usr/share/metainfo/$app_id.metainfo.xml"
             "usr/share/icons/hicolor/scalable/apps/$app_id.svg")
  for size in 16 24 32 48 64 128 256 512; do
    expected+=("usr/share/icons/hicolor/${size}x${size}/apps/$app_id.png")
  done
fi
for f in "${expected[@]}"; do
  [ -f "$root/$f" ] || fail "missing /$f in the package"
done
if find "$root" -name '*.a' -o -name '*.h' -o -name 'tst_*' -o -name 'fuzz_*' | grep -q .; then
  fail "the package holds build or test files: $(find "$root" -name '*.a' -o -name '*.h' -o -name 'tst_*' -o -name 'fuzz_*')"
fi

# Dependencies: Debian runtime packages (from dpkg-shlibdeps), never development packages.
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for p in libc6 libstdc++6 libhdf5; do
  grep -q "$p" <<<"$depends" || fail "Depends lacks $p"
done
if [ "$gui" = gui ]; then
  for p in libqt6core6 libqt6widgets6 qt6-qpa-plugins; do
    grep -q "$p" <<<"$depends" || fail "Depends lacks $p"
  done
fi
grep -q -- '-dev\b' <<<"$depends" && fail "Depends names a development package"

# The version is the project's, everywhere.
version=$(dpkg-deb -f "$deb" Version)
cli=$root/usr/bin/mla-workbench-cli
[ "$("$cli" --version)" = "mla-workbench-cli $version" ] || fail "CLI --version '$("$cli" --version)' is not $version"
if [ "$gui" = gui ]; then
  [ "$(QT_QPA_PLATFORM=offscreen "$root/usr/bin/mla-workbench" --version)" = "mla-workbench $version" ] \
    || fail "GUI --version does not print $version"
fi

# The unpacked CLI finds the unpacked demo model (next to itself, not in the source tree) and runs it.
info=$(env -u MLA_DEMO_DIR "$cli" info --demo --json) || fail "info --demo failed"
grep -q "\"model\": \"$root/usr/share/mla-workbench/demo/stories260K.bin\"" <<<"$info" \
  || fail "info --demo did not use the packaged demo model: $(head -3 <<<"$info")"
text=$(env -u MLA_DEMO_DIR "$cli" generate --demo --steps 24) || fail "generate --demo failed"
[ -n "$text" ] || fail "generate --demo printed nothing"
echo "packaged CLI: $("$cli" --version); info --demo uses $root/usr/share/mla-workbench/demo/stories260K.bin"
echo "generate --demo: $text"
