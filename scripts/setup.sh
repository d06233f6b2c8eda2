#!/usr/bin/env bash
# Installs what swift-moe needs beyond Swift itself: OpenBLAS (through pkg-config). Idempotent.
set -euo pipefail
need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if ! pkg-config --exists openblas 2>/dev/null; then need+=(libopenblas-dev); fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} ..." >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "error: swift not found on PATH; install Swift 6.0 or later" >&2; exit 1; }
