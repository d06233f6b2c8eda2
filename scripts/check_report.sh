#!/usr/bin/env bash
# Renders a `moe analyze` report in headless Chromium (Debian's package), takes a screenshot, and checks that every
# plot appears in the rendered page and that the console shows no errors.
# Usage: scripts/check_report.sh REPORT_DIR [SCREENSHOT.png]
set -euo pipefail
dir="${1:?usage: scripts/check_report.sh REPORT_DIR [SCREENSHOT.png]}"
shot="${2:-$dir/screenshot.png}"
html="$(cd "$dir" && pwd)/report.html"
[ -f "$html" ] || { echo "check_report: $html not found; run moe analyze --out $dir first" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null; else sudo apt-get install -y -q chromium >/dev/null; fi
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" --enable-logging=stderr --v=0)
# The page as Chromium rendered it (after parsing, layout and SVG), and its console.
chromium "${flags[@]}" --dump-dom "file://$html" > "$profile/dom.html" 2> "$profile/console.txt"
chromium "${flags[@]}" --window-size=1400,5000 --screenshot="$shot" "file://$html" 2>> "$profile/console.txt" >/dev/null
figures=$(grep -o '<figure class="plot">' "$html" | wc -l)
svgs=$(grep -o '<figure class="plot"><svg' "$profile/dom.html" | wc -l)
errors=$(grep -E 'CONSOLE|Uncaught|ERROR:.*(html|svg|report)' "$profile/console.txt" | grep -v -E 'dbus|gpu|GPU|viz|sandbox|fontconfig|ALSA|bus.cc|Fontconfig' || true)
echo "check_report: $figures plots in report.html, $svgs rendered as SVG by Chromium; screenshot $shot ($(stat -c %s "$shot") bytes)"
if [ "$figures" -eq 0 ] || [ "$svgs" -ne "$figures" ]; then echo "check_report: plots missing from the rendered page" >&2; exit 1; fi
if [ -n "$errors" ]; then echo "check_report: console errors:" >&2; echo "$errors" >&2; exit 1; fi
echo "check_report: no console errors"
