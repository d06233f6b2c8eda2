#!/usr/bin/env bash
# Sets up, builds the `moe` tool in release mode and runs it. With no arguments it runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product moe >&2
exec .build/release/moe "$@"
