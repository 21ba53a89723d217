#!/usr/bin/env bash
# Sets up everything the tests need (InfluxDB, virtualenv) and runs the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k codec
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
