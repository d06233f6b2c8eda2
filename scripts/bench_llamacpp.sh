#!/usr/bin/env bash
# llama.cpp on M1 (../shared/BENCHMARKS.md), for the side-by-side table of `moe bench model`. Never a dependency
# of the product or its tests. Everything it makes lives in WORK (default /tmp/moe-llamacpp), outside the repo:
#   1. a throwaway virtual environment with numpy and gguf (no torch);
#   2. llama-bench, built from the llama.cpp vendored in the llama-cpp-python source package on PyPI, with the
#      CPU's AVX-512/AVX2 features but never AMX (AMX is advertised but traps on some of these machines);
#   3. M1 written by ../shared/tools/make_m1.py (f32 safetensors) and make_m1_gguf.py (GGUF per precision);
#   4. llama-bench -p 512 -n 128 -d 0,512 -t THREADS -r 5 (pp512, and tg128 at depth 0 and after 512 tokens), as
#      JSON lines in WORK/llama-bench-<kind>.json.
# With MOE=path/to/moe, each precision also runs `moe bench model --json` on the same weights in swift-moe's form
# (f32 -> M1 f32 safetensors, f16 -> M1 bf16, q8_0 -> moe quantize q8, q4_0 -> q4, all matrices), one program
# after the other, never both at once, in ROUNDS alternating rounds (default 2: swift-moe, llama.cpp, swift-moe,
# llama.cpp), and prints the two side by side. This machine's speed drifts by a third within minutes, so each
# round's ratio pairs figures taken a minute apart; the table gives the median over rounds of each side and of
# the per-round ratios, with the ratios' range.
# Usage: [MOE=.build/release/moe] scripts/bench_llamacpp.sh [f32 f16 q8_0 q4_0]
#        (THREADS defaults to the core count; WORK, M1_DIR, VERSION, ROUNDS; MOE_ARGS, extra arguments of
#        `moe bench model`, e.g. "--kv-cache f16" to keep the KV cache in f16 as llama.cpp does)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tools="$here/../shared/tools"
work="${WORK:-/tmp/moe-llamacpp}"
version="${VERSION:-0.3.36}"
threads="${THREADS:-$(nproc)}"
rounds="${ROUNDS:-2}"
kinds=("$@"); [ ${#kinds[@]} -gt 0 ] || kinds=(f32 f16 q8_0 q4_0)
mkdir -p "$work"
[ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy gguf cmake ninja

src="$work/llama_cpp_python-$version/vendor/llama.cpp"
if [ ! -d "$src" ]; then
  # The sdist's address from PyPI's JSON API (pip download would try to build the package).
  url=$("$work/venv/bin/python" - "$version" <<'PY'
import json, sys, urllib.request
v = sys.argv[1]
d = json.load(urllib.request.urlopen("https://pypi.org/pypi/llama-cpp-python/json"))
files = (d.get("releases") or {}).get(v) or (d["urls"] if d["info"]["version"] == v else [])
u = [f["url"] for f in files if f["packagetype"] == "sdist"][0]
# A mirror may give addresses relative to its index; the file path after packages/ is the same on pypi.org.
print(u if u.startswith("http") else "https://pypi.org/packages/" + u.split("packages/", 2)[-1])
PY
)
  curl -sfL -o "$work/sdist.tar.gz" "$url"
  tar xzf "$work/sdist.tar.gz" -C "$work"
fi
bench="$work/build/bin/llama-bench"
if [ ! -x "$bench" ]; then
  flags=()
  for f in avx2:GGML_AVX2 fma:GGML_FMA f16c:GGML_F16C avx512f:GGML_AVX512 avx512_vnni:GGML_AVX512_VNNI \
           avx512_bf16:GGML_AVX512_BF16 avx512vbmi:GGML_AVX512_VBMI avx_vnni:GGML_AVX_VNNI; do
    grep -qw "${f%%:*}" /proc/cpuinfo && flags+=("-D${f#*:}=ON") || flags+=("-D${f#*:}=OFF")
  done
  PATH="$work/venv/bin:$PATH" cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF "${flags[@]}" >/dev/null
  PATH="$work/venv/bin:$PATH" cmake --build "$work/build" --target llama-bench -j "$(nproc)" >/dev/null
fi
m1="${M1_DIR:-$work/m1-f32}"
[ -f "$m1/model.safetensors" ] || "$work/venv/bin/python" "$tools/make_m1.py" "$m1" --dtype f32
moe_dir() {  # swift-moe's M1 at the precision llama.cpp runs as $1
  case "$1" in
    f32) echo "$m1" ;;
    f16) d="$work/m1-bf16"; [ -f "$d/model.safetensors" ] || "$work/venv/bin/python" "$tools/make_m1.py" "$d" --dtype bf16 >&2; echo "$d" ;;
    q8_0|q4_0)
      d="$work/m1-${1%_0}"
      # A q4 copy written before q4x8 (row-planar) would bench the old layout: write it again.
      if [ "$1" = q4_0 ] && [ -f "$d/model.safetensors" ] && ! head -c 1000000 "$d/model.safetensors" | grep -q q4x8; then rm -rf "$d"; fi
      [ -f "$d/model.safetensors" ] || "$MOE" quantize --model "$m1" --to "${1%_0}" --out "$d" --matrices all >&2
      echo "$d" ;;
  esac
}
for kind in "${kinds[@]}"; do
  gguf="$work/m1-$kind.gguf"
  [ -f "$gguf" ] || "$work/venv/bin/python" "$tools/make_m1_gguf.py" "$m1" "$gguf" "$kind" >/dev/null
  for round in $(seq "$rounds"); do
    if [ -n "${MOE:-}" ]; then
      echo "== swift-moe, M1 $kind, round $round" >&2
      # shellcheck disable=SC2086
      "$MOE" bench model --model "$(moe_dir "$kind")" ${MOE_ARGS:-} --json > "$work/moe-bench-$kind-$round.json"
    fi
    echo "== llama.cpp $version, M1 $kind, $threads threads, round $round" >&2
    "$bench" -m "$gguf" -p 512 -n 128 -d 0,512 -t "$threads" -r 5 -o jsonl | tee "$work/llama-bench-$kind-$round.json" >&2
  done
done
[ -n "${MOE:-}" ] || exit 0
"$work/venv/bin/python" - "$work" "$rounds" "${kinds[@]}" <<'PY'
import json, statistics, sys
work, rounds, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"| precision | figure | swift-moe median of rounds | llama.cpp median of rounds | swift-moe / llama.cpp, median (min-max) of {rounds} rounds |")
print("| --- | --- | --- | --- | --- |")
for kind in kinds:
    rows = {"prefill 512 tokens": [], "decode 128, depth 0": [], "decode 128, depth 512": []}
    for r in range(1, rounds + 1):
        moe = json.load(open(f"{work}/moe-bench-{kind}-{r}.json"))
        fig = {(f["name"], f["unit"]): f["value"]["median"] for f in moe["figures"]}
        llama = [json.loads(l) for l in open(f"{work}/llama-bench-{kind}-{r}.json") if l.strip()]
        def ll(prompt, gen, depth):
            x = [x for x in llama if x["n_prompt"] == prompt and x["n_gen"] == gen and x.get("n_depth", 0) == depth]
            return x[0]["avg_ts"] if x else None
        for name, key, peer in [("prefill 512 tokens", ("prefill 512 tokens", "tok/s"), ll(512, 0, 0)),
                                ("decode 128, depth 0", ("decode, depth 0", "tok/s"), ll(0, 128, 0)),
                                ("decode 128, depth 512", ("decode, depth 512", "tok/s"), ll(0, 128, 512))]:
            if fig.get(key) and peer:
                rows[name].append((fig[key], peer))
    for name, pairs in rows.items():
        if not pairs:
            continue
        ratios = [m / p for m, p in pairs]
        print(f"| {kind} | {name} tok/s | {statistics.median(m for m, _ in pairs):.1f} | {statistics.median(p for _, p in pairs):.1f} "
              f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
PY
