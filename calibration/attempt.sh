#!/usr/bin/env bash
# One calibration attempt of the synthetic world (docs/results/calibration.md): for each task, render its
# data from the client stream at the calibration seed, serve the attempt's teacher on 127.0.0.1, and run
# the attempt's sweep config (zero-shot and ERM with its per-target source-validation search, nothing
# else), then write the report with the premises against their pre-registered bands.
#
#   calibration/attempt.sh ATTEMPT_DIR TEACHER.pt [TASK...]
#   QUICK=STUDENT calibration/attempt.sh ...   # only the premises that need no training (E1, E3, the probe)
#
# ATTEMPT_DIR holds one sweep config per task (<task>.yaml, with a `demo:` section naming the task, the
# images per class and the calibration data seed); results go to $CALIB_OUT/<attempt>/<task>/
# (default CALIB_OUT=/work/calib/attempts). Resumable: rerun the same command after an interruption.
set -euo pipefail
attempt=$(cd "$1" && pwd); teacher=$(realpath "$2"); shift 2
tasks=("$@"); [ ${#tasks[@]} -gt 0 ] || tasks=(synth-pacs synth-officehome)
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${VENV:-$root/.venv}/bin"  # VENV: another checkout's venv, this checkout's code (PYTHONPATH)
export PYTHONPATH="$root"
out="${CALIB_OUT:-/work/calib/attempts}/$(basename "$attempt")"
mkdir -p "$out/vendor"
db="$out/vendor/ledger.sqlite3"
[ -s "$out/vendor/key.txt" ] || "$bin/vl2v-vendor" keys create --db "$db" --name calibration --budget 100000000 > "$out/vendor/key.txt"
port=$("$bin/python" -c "from client_distill.buy.local_vendor import free_port; print(free_port())")
"$bin/vl2v-vendor" serve --db "$db" --pretrained "$teacher" --port "$port" > "$out/vendor/vendor.log" 2>&1 &
vendor=$!
trap 'kill $vendor 2>/dev/null; wait $vendor 2>/dev/null' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 1; done
export VL2V_VENDOR=vl2v VL2V_VENDOR_URL="http://127.0.0.1:$port" VL2V_API_KEY="$(cat "$out/vendor/key.txt")" VL2V_CACHE="$out/cache"
for task in "${tasks[@]}"; do
  echo "== $(basename "$attempt") / $task: $(date -u +%FT%TZ)"
  if [ -n "${QUICK:-}" ]; then
    eval "$(sed -n 's/^demo: {task: \([^,]*\), per_class: \([0-9]*\), seed: \([0-9]*\).*/t=\1 pc=\2 seed=\3/p' "$attempt/$task.yaml")"
    [ -f "$out/data/$task/.complete" ] || { "$bin/vl2v" data synth --task "$t" --out "$out/data/$task" --per-class "$pc" --seed "$seed" --overwrite > /dev/null && touch "$out/data/$task/.complete"; }
    [ -f "$out/teachers/$task/manifest.json" ] || "$bin/vl2v" embed --data "$out/data/$task" --dataset "$task" --split all --max-queries 10000000 --out "$out/teachers/$task" > "$out/embed-$task.log" 2>&1
    "$bin/python" "$root/calibration/quick_premises.py" "$out/data/$task" "$task" "$QUICK" "$out/teachers/$task" | tee "$out/quick-$task.json"
    continue
  fi
  start=$(date +%s)
  "$bin/vl2v" demo --config "$attempt/$task.yaml" --out "$out/$task" --data "$out/data/$task" \
    --vendor-url "http://127.0.0.1:$port" --api-key-file "$out/vendor/key.txt" --workers "${WORKERS:-2}" > "$out/$task.log" 2>&1
  echo "   done in $(( $(date +%s) - start )) s: $out/$task/report.md"
done
