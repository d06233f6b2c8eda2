#!/usr/bin/env bash
# Fuzzes one parser with libFuzzer (-sanitize=fuzzer,address) for SECONDS (default 600).
# Usage: bash scripts/fuzz.sh NAME [SECONDS]
#   NAME: safetensors-header, config, tokenizer, generation-config, index, blocks
# Anything found is written to .build/fuzz/artifacts/NAME-*; copy it into Tests/Fixtures/fuzz/NAME/ (the
# regression test replays that folder) once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: bash scripts/fuzz.sh NAME [SECONDS]; NAME: safetensors-header, config, tokenizer, generation-config, index, blocks}"
seconds="${2:-600}"
case "$name" in
    safetensors-header|config|tokenizer|generation-config|index|blocks) ;;
    *) echo "fuzz.sh: unknown target '$name'; use safetensors-header, config, tokenizer, generation-config, index or blocks" >&2; exit 2 ;;
esac
bash scripts/setup.sh >/dev/null
out=.build/fuzz
# --sanitize fuzzer links libFuzzer's main in place of the replay main; the -Xswiftc/-Xcc flags instrument every
# module the target reaches (SwiftPM alone instruments only the executable's own).
swift build -c release --product moe-fuzz --build-path "$out/build" --sanitize fuzzer --sanitize address \
    -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address -Xswiftc -DFUZZING 2>&1 | grep -E 'error|Build' | tail -3
corpus="$out/corpus/$name"
mkdir -p "$corpus" "$out/artifacts"
# Seeds: real files of each format (the fixtures) and a few near misses, so the fuzzer starts inside the format.
python3 scripts/fuzz_seeds.py "$name" "$corpus"
cp Tests/Fixtures/fuzz/"$name"/* "$corpus"/ 2>/dev/null || true
case "$name" in
    config) max_len=8192 ;;
    tokenizer) max_len=131072 ;;
    blocks) max_len=131072 ;;
    *) max_len=4096 ;;
esac
MOE_FUZZ_TARGET="$name" MOE_FUZZ_FIXTURES="$PWD/Tests/Fixtures/hf" ASAN_OPTIONS=detect_leaks=0 \
    "$out/build/release/moe-fuzz" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$out/artifacts/$name-" -print_final_stats=1 "$corpus"
