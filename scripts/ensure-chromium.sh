#!/usr/bin/env bash
# Make sure Debian's Chromium is installed: the history browser's tests (tests/server/test_ui.py)
# drive it headless through Playwright's executable_path (never `playwright install`, whose
# browser download is not a package). Idempotent: does nothing when chromium is on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "ensure-chromium: Chromium is not installed; installing it with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "ensure-chromium: chromium still missing" >&2; exit 1; }
