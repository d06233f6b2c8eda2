#!/usr/bin/env bash
# kill -9 chaos test: trains a small MoE model uninterrupted, then trains it again while killing it with
# SIGKILL KILLS times at seeded points of its training (resuming from the run directory after each kill), and checks that the
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
# Kill points: for kill i of n, a seeded step in the first half of the i-th of n equal slots of the first 3/4 of
# the run, and a seeded delay of 0-40 ms after the run's log reaches that step. Kills are placed by training
# progress, not by clock time, so a machine that is busier or idler than during the reference run (CI runs other
# tests beside this one) still has every kill land while training runs. The delay lets some kills land while a
# checkpoint is being written.
steps=$(python3 -c "import sys; a = sys.argv[1:]; print(a[a.index('--steps') + 1])" "${args[@]}")
points=$(python3 -c "
import random, sys
r = random.Random(int(sys.argv[1])); n = int(sys.argv[2]); slot = 0.75 * int(sys.argv[3]) / n
print(' '.join(f'{int(1 + i * slot + r.uniform(0, slot / 2))}:{r.uniform(0, 0.04):.3f}' for i in range(n)))" "$seed" "$kills" "$steps")
# The step of the last whole line of the run's log (empty before the first).
logged_step() { tail -n1 "$work/run/train_log.jsonl" 2>/dev/null | grep -o '"step":[0-9]*' | cut -d: -f2 || true; }
# Whether process $1 is still running (a child that has exited stays a zombie until waited for).
running() { local st; read -r _ _ st _ < "/proc/$1/stat" 2>/dev/null && [ "$st" != Z ]; }
limit=$((60 + 20 * ${ref_seconds%.*}))  # seconds a life may take to reach its kill point before the test gives up
killed=0; during_write=0; fresh_starts=0; resumes=0
for point in $points; do
    target=${point%%:*}; d=${point##*:}
    if compgen -G "$work/run/checkpoints/step-*" > /dev/null; then
        "$moe" train --out "$work/run" --resume "$work/run" "${args[@]}" >> "$work/run.txt" 2>&1 &
        resumes=$((resumes + 1))
    else
        "$moe" train --out "$work/run" "${args[@]}" >> "$work/run.txt" 2>&1 &
        fresh_starts=$((fresh_starts + 1))
    fi
    pid=$!
    deadline=$((SECONDS + limit))
    while running "$pid"; do
        s=$(logged_step)
        if [ -n "$s" ] && [ "$s" -ge "$target" ]; then break; fi
        if [ "$SECONDS" -gt "$deadline" ]; then
            kill -9 "$pid" 2>/dev/null || true
            echo "chaos: a training run made no progress to step $target in $limit s; its output:" >&2
            tail -5 "$work/run.txt" >&2
            exit 1
        fi
        sleep 0.01
    done
    sleep "$d"
    kill -9 "$pid" 2>/dev/null || true
    status=0; wait "$pid" 2>/dev/null || status=$?
    if [ "$status" -eq 137 ]; then
        killed=$((killed + 1))
        if compgen -G "$work/run/checkpoints/.step-*.tmp-$pid" > /dev/null; then during_write=$((during_write + 1)); fi
    elif [ "$status" -eq 0 ]; then
        echo "chaos: the run finished before kill $((killed + 1)) of $kills (at step $target); raise --steps in scripts/chaos.sh" >&2
        exit 1
    else
        echo "chaos: a training run failed on its own (exit $status) before kill $((killed + 1)) of $kills; its output:" >&2
        tail -5 "$work/run.txt" >&2
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
