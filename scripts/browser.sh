#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the web view's browser tests (Playwright
# drives /usr/bin/chromium; it never downloads a browser of its own). Installs it with
# apt-get when missing (needs root); says why and exits non-zero when it cannot.
set -euo pipefail

for candidate in "${JUDGESERVE_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "browser.sh: using $candidate"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null; then
  echo "browser.sh: chromium is missing and there is no apt-get to install it;" \
       "install Chromium and set JUDGESERVE_CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "browser.sh: chromium is missing and installing it needs root:" \
       "sudo apt-get update && sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "browser.sh: installing Debian's chromium for the browser tests"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
  echo "browser.sh: 'apt-get install chromium' failed (no network or no package?);" \
       "the browser tests will be skipped" >&2
  exit 1
fi
[ -x /usr/bin/chromium ] || { echo "browser.sh: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
echo "browser.sh: installed $(/usr/bin/chromium --version 2>/dev/null | head -1)"
