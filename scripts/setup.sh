#!/usr/bin/env bash
# Installs what swift-moe needs beyond Swift itself, both opened at run time (never linked):
# - OpenBLAS's shared library, with the kernels chosen from the CPU's features (Sources/CMoEBLAS/include/moe_blas.h);
# - oneDNN's (libdnnl2, oneDNN 2.x), optional, for BF16 prompt products on CPUs with AVX512_BF16
#   (Sources/CMoEBLAS/bf16gemm.c); without it prompts run on sgemm. Idempotent.
set -euo pipefail
has() { { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q "$1"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
updated=0
install() {
    [ $updated = 1 ] || { $SUDO apt-get update -qq; updated=1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if [ "$(uname)" = Linux ]; then
    if ! has 'libopenblas\.so\.0 '; then
        echo "installing libopenblas0-pthread ..." >&2
        install libopenblas0-pthread
    fi
    if ! has 'libdnnl\.so\.2 '; then
        echo "installing libdnnl2 (optional: BF16 prompt products) ..." >&2
        install libdnnl2 || echo "warning: libdnnl2 could not be installed; prompts will run on sgemm" >&2
    fi
fi
command -v swift >/dev/null 2>&1 || { echo "error: swift not found on PATH; install Swift 6.0 or later" >&2; exit 1; }
