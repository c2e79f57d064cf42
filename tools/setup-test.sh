#!/usr/bin/env bash
# Everything `npm test` needs on a fresh Debian machine: the npm packages from the lock file and,
# for the web view's browser tests (test/fixtures/web.ts), Debian's chromium at /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
fi
