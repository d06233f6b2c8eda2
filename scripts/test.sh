#!/usr/bin/env bash
# Sets up and runs the whole test suite (release build: the numerical tests train small models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --build-tests
swift test -c release --skip-build "$@"
