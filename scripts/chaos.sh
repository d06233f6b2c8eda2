#!/usr/bin/env bash
# kill -9 chaos test: trains a small MoE model uninterrupted, then trains it again while killing it with
# SIGKILL at random moments KILLS times (resuming from the run directory after each kill), and checks that the
# final weights, optimizer moments and every step's losses equal the uninterrupted run's bit for bit.
# Usage: bash scripts/chaos.sh [KILLS=20] [SEED=1]
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-20}"
seed="${2:-1}"
moe="${MOE:-.build/release/moe}"
if [ ! -x "$moe" ]; then bash scripts/setup.sh >/dev/null; swift build -c release --product moe >/dev/null; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/moe-chaos.XXXXXX")
trap 'rm -rf "$work"' EXIT
args=(--steps 240 --dim 64 --layers 2 --experts 4 --batch 8 --sequence 64 --checkpoint-every 2 --keep 2
      --log-every 1 --eval-every 1000 --samples 0 --arithmetic-problems 0 --seed 1)
t0=$(date +%s.%N)
"$moe" train --out "$work/ref" "${args[@]}" > "$work/ref.txt"
ref_seconds=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(date +%s.%N)")
# Kill delays: seeded, spread so that the kills together cover about half of an uninterrupted run (each life
# also spends part of its time starting up, so the run is still training at the last kill).
delays=$(python3 -c "
import random, sys
r = random.Random(int(sys.argv[1])); n = int(sys.argv[2]); t = float(sys.argv[3])
print(' '.join(f'{0.15 + r.uniform(0, t / n):.3f}' for _ in range(n)))" "$seed" "$kills" "$ref_seconds")
killed=0; during_write=0; fresh_starts=0; resumes=0
for d in $delays; do
    if compgen -G "$work/run/checkpoints/step-*" > /dev/null; then
        "$moe" train --out "$work/run" --resume "$work/run" "${args[@]}" >> "$work/run.txt" 2>&1 &
        resumes=$((resumes + 1))
    else
        "$moe" train --out "$work/run" "${args[@]}" >> "$work/run.txt" 2>&1 &
        fresh_starts=$((fresh_starts + 1))
    fi
    pid=$!
    sleep "$d"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        killed=$((killed + 1))
        if compgen -G "$work/run/checkpoints/.step-*.tmp-$pid" > /dev/null; then during_write=$((during_write + 1)); fi
    else
        wait "$pid" || { echo "chaos: a training run failed on its own; see below" >&2; tail -5 "$work/run.txt" >&2; exit 1; }
        echo "chaos: the run finished before kill $((killed + 1)) of $kills; raise --steps in scripts/chaos.sh" >&2
        exit 1
    fi
done
# The last life runs to the end.
"$moe" train --out "$work/run" --resume "$work/run" "${args[@]}" >> "$work/run.txt" 2>&1
resumes=$((resumes + 1))
last=$(ls "$work/ref/checkpoints" | tail -1)
for f in model.safetensors optimizer.safetensors; do
    cmp -s "$work/ref/checkpoints/$last/$f" "$work/run/checkpoints/$last/$f" || { echo "chaos: $last/$f differs from the uninterrupted run" >&2; exit 1; }
done
python3 - "$work/ref/train_log.jsonl" "$work/run/train_log.jsonl" <<'PY'
import json, sys
def steps(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [(r["step"], r["loss"], r["aux_loss"], r["expert_load"]) for r in rows]
ref, run = steps(sys.argv[1]), steps(sys.argv[2])
if run != ref:
    bad = next((i for i, (a, b) in enumerate(zip(ref, run)) if a != b), min(len(ref), len(run)))
    sys.exit(f"chaos: the losses differ from the uninterrupted run at log line {bad + 1} ({len(run)} lines against {len(ref)})")
PY
skipped=$(grep -c '^warning: skipping' "$work/run.txt" || true)
echo "chaos: $killed kills (SIGKILL, $during_write during a checkpoint write), $fresh_starts fresh starts before the first checkpoint, $resumes resumes, $skipped unfinished checkpoints skipped; final weights, optimizer moments and all $(wc -l < "$work/ref/train_log.jsonl") logged losses equal the uninterrupted run's bit for bit (uninterrupted run ${ref_seconds} s)"
