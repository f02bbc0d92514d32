#!/usr/bin/env bash
# Between two device commands of one GPU pass, here, fast (the machine goes back after ~30 s
# idle): the newest gpu-pass-*.tar.gz under FOLDER gives its stack database to
# .data/prev-sweeps.db.gz (the carry takes it along), and the continuation's settings are printed.
#
#   bash bench/gpu_continue.sh FILES_AT [BUDGET_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER="${1:?usage: bench/gpu_continue.sh FOLDER_WITH_GPU_PASS_TARBALLS [BUDGET_SECONDS]}"
BUDGET="${2:-150}"
PASS=$(find "$FOLDER" -name 'gpu-pass-*.tar.gz' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
[ -n "$PASS" ] || { echo "gpu_continue: no gpu-pass-*.tar.gz under $FOLDER" >&2; exit 1; }
# one per pass: e2e/ for a first pass, e2e-continued/ for a continuation
DB=$(tar tzf "$PASS" | grep -E '^(\./)?e2e(-continued)?/sweeps\.db\.gz$' | head -n 1)
[ -n "$DB" ] || { echo "gpu_continue: $PASS holds no e2e database" >&2; exit 1; }
mkdir -p .data
tar xzf "$PASS" -O "$DB" > .data/prev-sweeps.db.gz
K=$(tar xzf "$PASS" -O env.txt 2> /dev/null | sed -n 's/^e2e: K=\([0-9]*\).*/\1/p' | tail -n 1)
echo "from $PASS ($DB): .data/prev-sweeps.db.gz"
echo "GPU_SH_BUDGET=$BUDGET GPU_SH_STAGES=install,e2e GPU_SH_K=${K:-4}" \
  "GPU_SH_DB=.data/prev-sweeps.db.gz bash bench/gpu.sh    # timeout_s $(( BUDGET + 40 ))"
