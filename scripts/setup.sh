#!/usr/bin/env bash
# Installs what swift-moe needs beyond Swift itself: OpenBLAS's shared library (opened at run time, with the kernels
# chosen from the CPU's features; see Sources/CMoEBLAS/include/moe_blas.h). Idempotent.
set -euo pipefail
has_openblas() { { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libopenblas\.so\.0 '; }
if [ "$(uname)" = Linux ] && ! has_openblas; then
    echo "installing libopenblas0-pthread ..." >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "error: swift not found on PATH; install Swift 6.0 or later" >&2; exit 1; }
