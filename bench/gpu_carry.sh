#!/usr/bin/env bash
# What bench/gpu.sh's device command carries, made and measured here: .whl/ (bench/wheelhouse.py)
# and .data/ (the four Fashion-MNIST .gz files, and a continuation's prev-sweeps.db.gz if there).
# A CPU smoke run leaves ~210 MB of decoded .npy caches beside the .gz files; carried, they
# would put the call over its 64 MiB, so they are removed. Fails when tree + carry exceed it.
#
#   bash bench/gpu_carry.sh            # then: carry [".whl", ".data"]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SRC="${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"
LIMIT=$(( 64 * 1024 * 1024 ))

"$PY" bench/wheelhouse.py | tail -n 1
mkdir -p .data/fashion-mnist
rm -rf .data/fashion-mnist/.sweeps-decoded
cp -n "$SRC"/*-ubyte.gz .data/fashion-mnist/
extra=$(find .data -type f ! -path '.data/fashion-mnist/*.gz' ! -name prev-sweeps.db.gz)
[ -z "$extra" ] || { echo "gpu_carry: .data holds more than the carry needs:" >&2; echo "$extra" >&2; exit 1; }

bytes() { xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}'; }
tree=$(( $(git ls-files -z | bytes) + $(git ls-files -z -o --exclude-standard | bytes) ))
carry=$(find .whl .data -type f -print0 | bytes)
total=$(( tree + carry ))
awk -v t="$tree" -v c="$carry" 'BEGIN {m = 1048576
  printf "tree %.1f MiB + carry %.1f MiB = %.1f MiB of 64 MiB\n", t / m, c / m, (t + c) / m}'
[ "$total" -le "$LIMIT" ] || { echo "gpu_carry: over the 64 MiB a call carries" >&2; exit 1; }
