#!/usr/bin/env bash
# llama.cpp on M1 (../shared/BENCHMARKS.md), for the side-by-side table of `moe bench model`. Never a dependency
# of the product or its tests. Everything it makes lives in WORK (default /tmp/moe-llamacpp), outside the repo:
#   1. a throwaway virtual environment with numpy and gguf (no torch);
#   2. llama-bench, built from the llama.cpp vendored in the llama-cpp-python source package on PyPI, with the
#      CPU's AVX-512/AVX2 features but never AMX (AMX is advertised but traps on some of these machines);
#   3. M1 written by ../shared/tools/make_m1.py (f32 safetensors) and make_m1_gguf.py (GGUF per precision);
#   4. llama-bench -p 512 -n 128 -t THREADS (pp512 and tg128), as JSON lines in WORK/llama-bench-<kind>.json.
# Usage: scripts/bench_llamacpp.sh [f32 f16 q8_0 q4_0]   (THREADS defaults to the core count; WORK, M1_DIR, VERSION)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tools="$here/../shared/tools"
work="${WORK:-/tmp/moe-llamacpp}"
version="${VERSION:-0.3.36}"
threads="${THREADS:-$(nproc)}"
kinds=("$@"); [ ${#kinds[@]} -gt 0 ] || kinds=(f32 f16 q8_0 q4_0)
mkdir -p "$work"
[ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy gguf cmake ninja

src="$work/llama_cpp_python-$version/vendor/llama.cpp"
if [ ! -d "$src" ]; then
  # The sdist's address from PyPI's JSON API (pip download would try to build the package).
  url=$("$work/venv/bin/python" - "$version" <<'PY'
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(f"https://pypi.org/pypi/llama-cpp-python/{sys.argv[1]}/json"))
u = [u["url"] for u in d["urls"] if u["packagetype"] == "sdist"][0]
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
for kind in "${kinds[@]}"; do
  gguf="$work/m1-$kind.gguf"
  [ -f "$gguf" ] || "$work/venv/bin/python" "$tools/make_m1_gguf.py" "$m1" "$gguf" "$kind" >/dev/null
  echo "== llama.cpp $version, M1 $kind, $threads threads" >&2
  "$bench" -m "$gguf" -p 512 -n 128 -t "$threads" -r 5 -o jsonl | tee "$work/llama-bench-$kind.json"
done
