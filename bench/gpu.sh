#!/usr/bin/env bash
# The GPU pass, for one (possibly offline) H100: engine GPU tests, engine vs naive loop, the full
# seed ViT 7/4/16 run, sweep throughput at K = 1, 2, 4, 8 on the same runs, peak memory; then a
# summary table. GPU_SH_SLICE=1 adds the 12-row table slice at 200,000 inputs at K=1 and K=4
# (minutes each: run it with a larger GPU_SH_BUDGET).
# Every stage is time-boxed and independent (a failure is recorded and the next stage runs);
# the whole script stays under GPU_SH_BUDGET seconds (default 460, i.e. within 8 minutes).
#
#   bash bench/gpu.sh                  # results under $OUT (or ./bench-out)
#   GPU_SH_SMOKE=1 bash bench/gpu.sh   # the same logic with tiny input counts (CPU dry run)
#
# Needs: python3 with torch, torchvision, scikit-learn, numpy, pyyaml, pytest, and simpleeval
# (for shared.spec) on PYTHONPATH; Fashion-MNIST .gz files in $SWEEPS_DATA_DIR
# (default ./.data/fashion-mnist). Nothing is downloaded.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./bench-out}"
mkdir -p "$OUT"
export SWEEPS_DATA_DIR="${SWEEPS_DATA_DIR:-./.data/fashion-mnist}"
PY="${PYTHON:-python3}"
SMOKE="${GPU_SH_SMOKE:-0}"
BUDGET="${GPU_SH_BUDGET:-460}"
START=$(date +%s)
STAGES="$OUT/stages.tsv"
printf 'stage\trc\tseconds\tbox\n' > "$STAGES"

if [ "$SMOKE" = 1 ]; then
  STEPS=4; WARMUP=2; MODES="naive,engine,engine+compile"; FULL_ARGS="--max-inputs 640 --smoke"
  SIZE_ROWS="cnn"; SIZE_ARGS="--max-inputs 200000 --smoke --copies 2 --ks 1,2"; SIZE_S=20
  SLICE_ARGS="--max-inputs 320 --smoke --rows cnn,vit_7_4_16,vit_7_4_8"; SLICE_S=60
  TESTS="tests/worker/engine/test_engine_gpu.py"
else
  STEPS=2000; WARMUP=100; MODES="naive,engine+bf16+compile"; FULL_ARGS=""
  SIZE_ROWS="vit_7_4_16"; SIZE_ARGS="--max-inputs 2000000 --copies 8 --ks 1,2,4,8"; SIZE_S=20
  SLICE_ARGS="--max-inputs 200000"; SLICE_S=900
  TESTS="tests/worker/engine/test_engine_gpu.py"  # the CPU engine tests run in CI
fi

# stage NAME BOX RESERVE CMD...: run CMD for at most BOX seconds, and never into the RESERVE
# seconds kept for the stages after it.
stage() {
  local name=$1 box=$2 reserve=$3
  shift 3
  local left=$(( BUDGET - ($(date +%s) - START) - reserve ))
  [ "$left" -lt "$box" ] && box=$left
  if [ "$box" -lt 10 ]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "$box" >> "$STAGES"
    echo "== $name: skipped, out of time"
    return
  fi
  echo "== $name (at most ${box}s)"
  local t0
  t0=$(date +%s)
  timeout -k 5 "$box" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$box" >> "$STAGES"
  tail -n 12 "$OUT/$name.log"
}

# 0. where we are
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c "import sys, torch, torchvision, sklearn, numpy; print(sys.version.split()[0], \
torch.__version__, torch.version.cuda, torchvision.__version__, sklearn.__version__, \
numpy.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
  nproc
  ls "$SWEEPS_DATA_DIR"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. the engine's GPU tests
stage tests 90 365 "$PY" -m pytest -o addopts="" -p no:cacheprovider --confcutdir=tests/worker/engine \
  -q -rs --junitxml="$OUT/tests.xml" $TESTS

# 2. engine vs the naive seed-style loop, same process and device
stage throughput 95 270 "$PY" bench/train_throughput.py --row vit_7_4_16 --steps "$STEPS" \
  --warmup "$WARMUP" --modes "$MODES" --data-dir "$SWEEPS_DATA_DIR" --json "$OUT/throughput.json"

# 3. the full seed ViT 7/4/16 run with the fastest engine setting measured in stage 2
FLAGS=$("$PY" - "$OUT/throughput.json" <<'PYEOF' 2>/dev/null || echo "--precision fp32"
import json, sys
runs = [r for r in json.load(open(sys.argv[1])) if r["mode"] != "naive" and "inputs_per_s" in r]
best = max(runs, key=lambda r: r["inputs_per_s"])["mode"].split("+")
print("--precision", "bf16" if "bf16" in best else "fp32", "--compile" if "compile" in best else "")
PYEOF
)
echo "full run flags: $FLAGS" | tee "$OUT/full_run.flags"
stage full_run 140 130 "$PY" bench/full_run.py --row vit_7_4_16 $FLAGS $FULL_ARGS \
  --data-dir "$SWEEPS_DATA_DIR" --json "$OUT/full_run.json"
# 3a. opt-in (GPU_SH_PER_SAMPLE=1, with a larger GPU_SH_BUDGET): the same run with one augment
#     operation per image, for its effect on the seed's final accuracy
if [ "${GPU_SH_PER_SAMPLE:-0}" = 1 ]; then
  stage full_run_per_sample 140 130 "$PY" bench/full_run.py --row vit_7_4_16 $FLAGS $FULL_ARGS \
    --augment per-sample --data-dir "$SWEEPS_DATA_DIR" --json "$OUT/full_run_per_sample.json"
fi

# 3b. the augment's cost per batch of 64: torchvision's and the device versions, eager (compiled,
#     they are part of the step that stage 2 timed)
stage augment 15 115 "$PY" bench/augment_speed.py --repeats 200 --no-compiled

# 4. sweep throughput at K = 1, 2, 4, 8: the same runs (copies of one row) at every K, each run
#    its own process, counted at a deadline. With the file's own settings (fp32, eager), as the
#    seed file runs by default and so what the default K is for: with `compile: true` every
#    process compiles at start, and K processes compiling at once took most of a short window
#    (smoke run on CPU). Then, if asked, the seed's 12 table rows to the end at K=1 and K=4 with
#    the full run's flags.
stage sweep_sizes $(( 4 * (SIZE_S + 5) + 15 )) 0 "$PY" bench/sweep_slice.py --rows "$SIZE_ROWS" \
  --seconds "$SIZE_S" $SIZE_ARGS --data-dir "$SWEEPS_DATA_DIR" \
  --log-dir "$OUT/sweep-logs/sizes" --json "$OUT/sweep_sizes.json"
SWEEP_FLAGS=$(echo "$FLAGS" | tr -s ' ')
if [ "${GPU_SH_SLICE:-0}" = 1 ]; then
  stage sweep_slice $(( 2 * SLICE_S + 30 )) 5 "$PY" bench/sweep_slice.py --ks 1,4 \
    --seconds "$SLICE_S" $SLICE_ARGS $SWEEP_FLAGS --data-dir "$SWEEPS_DATA_DIR" \
    --log-dir "$OUT/sweep-logs/slice" --json "$OUT/sweep_slice.json"
fi

# 5. summary
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception:
        return None
print("\n==== summary")
print((out / "env.txt").read_text().strip())
print((out / "stages.tsv").read_text())
for r in load("throughput.json") or []:
    if "error" in r:
        print(f"throughput {r['mode']:<22} failed: {r['error'][:80]}")
    else:
        print(f"throughput {r['mode']:<22} {r['inputs_per_s']:>10.0f} inputs/s  "
              f"x{r.get('speedup_vs_naive') or 0:.2f} vs naive  peak {r.get('peak_gpu_mib') or 0:.0f} MiB")
aug = (out / "augment.log").read_text().strip().splitlines()[-1:] if (out / "augment.log").exists() else []
print("augment per batch: " + (aug[0] if aug else "no result"))
for name in ("full_run.json", "full_run_per_sample.json"):
    full = load(name)
    if not full:
        print(f"{name}: no result")
        continue
    print(f"full run ({full.get('augment', 'file')} augment) {full['row']} "
          f"{full['inputs']:,} inputs: {full['wall_seconds']:.1f} s wall "
          f"(precision {full['precision']}, compile {full['compile']}); argmax "
          f"{full['accuracy_argmax']:.4f} svc {full['accuracy_svc']:.4f} svc_heldout "
          f"{full['accuracy_svc_heldout']:.4f}; peak GPU {full['peak_gpu_mib'] or 0:.0f} MiB, "
          f"host {full['peak_host_mib']:.0f} MiB")
for name in ("sweep_sizes", "sweep_slice"):
    s = load(f"{name}.json")
    if not s:
        print(f"{name}: no result")
        continue
    base = s["sweeps"][0]["inputs_per_s"] or 1
    print(f"{name}: {len(s['rows'])} runs of {','.join(dict.fromkeys(s['rows']))}, "
          f"like for like: {s['like_for_like']}")
    for r in s["sweeps"]:
        print(f"   K={r['k']}: {r['inputs_per_s']:>8.0f} inputs/s (x{r['inputs_per_s'] / base:.2f}),"
              f" steady {r['steady_inputs_per_s']:.0f}; {r['runs_completed']}/{r['runs_listed']}"
              f" done, {r['failed']} failed; peak GPU/run {r['max_peak_gpu_mib']:.0f} MiB, "
              f"host/proc {r['max_peak_host_mib']:.0f} MiB")
PYEOF
echo "total $(( $(date +%s) - START ))s; results in $OUT"
