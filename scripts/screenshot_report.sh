#!/usr/bin/env bash
# Render a report's HTML page in headless Chromium, offline, and save a screenshot:
#
#   scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
#
# Uses Debian's chromium (/usr/bin/chromium; `apt-get install -y chromium`), or $CHROMIUM.
# Background networking, component updates and sync are off and the profile is a fresh
# temporary folder, so the page is rendered from the file alone (the report loads nothing
# from the network). The page is captured at 1280x2400 by default.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
report="$(realpath "$1")"
out="$(realpath -m "$2")"
size="${3:-1280,2400}"
browser="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -f "$report" ]; then
  echo "no such report: $report" >&2
  exit 1
fi
if [ ! -x "$browser" ]; then
  echo "no chromium at $browser: apt-get update && apt-get install -y chromium (or set CHROMIUM)" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" --screenshot="$out" --window-size="$size" \
  "file://$report" >/dev/null 2>&1
if [ ! -s "$out" ]; then
  echo "chromium wrote no screenshot to $out" >&2
  exit 1
fi
echo "$out"
