#!/usr/bin/env bash
# The test command: set up, start the real services (Kafka, ClickHouse server,
# Chromium for screenshots), run pytest, stop the services.
#   scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export LIANWATCH_REQUIRE_SERVICES=${LIANWATCH_REQUIRE_SERVICES:-1}
cleanup() {
  scripts/kafka.sh stop >/dev/null 2>&1 || true
  scripts/clickhouse.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/browser.sh install
scripts/kafka.sh start
scripts/clickhouse.sh start
.venv/bin/python -m pytest "$@"
