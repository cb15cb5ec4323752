#!/usr/bin/env bash
# Install Debian's headless Chromium (for the screenshot tests) if missing.
set -euo pipefail
if [ "${1:-install}" = install ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
    else
      echo "browser.sh: chromium missing and not root: screenshot tests will be skipped" >&2
    fi
  fi
fi
