#!/usr/bin/env bash
# Fuzzes the safetensors header parser with libFuzzer for SECONDS (default 600).
# Usage: bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
out=.build/fuzz
mkdir -p "$out/corpus"
swiftc -sanitize=fuzzer,address -parse-as-library -O \
    Sources/MoEIO/SafetensorsHeader.swift Sources/MoEIO/JSONKeys.swift Fuzz/SafetensorsHeaderFuzz.swift \
    -o "$out/safetensors-header"
# Seeds: a valid two-tensor file and a few near misses, so the fuzzer starts inside the format.
seed() { python3 - "$1" "$2" "$3" <<'PY'
import struct, sys
header, data, path = sys.argv[1].encode(), bytes.fromhex(sys.argv[2]), sys.argv[3]
open(path, "wb").write(struct.pack("<Q", len(header)) + header + data)
PY
}
seed '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[8,10]},"__metadata__":{"format":"pt"}}' 00000000000000000000 "$out/corpus/valid"
seed '{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}' 0000000000000000 "$out/corpus/scalar"
seed '{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}' 00000000 "$out/corpus/size"
"$out/safetensors-header" -max_total_time="$seconds" -print_final_stats=1 "$out/corpus"
