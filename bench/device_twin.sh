#!/usr/bin/env bash
# A CPU twin of the lent GPU machine, to spend none of its scarce minutes on what a CPU can find:
# Python 3.12 with torch 2.11.0 + torchvision 0.26.0 (what that machine runs, not our 2.14.1) and
# its preinstalled packages, none of the service's. On it: bench/gpu.sh's smoke run (the wheel
# install into .site, every stage, the service end to end) and the engine's CPU tests.
#
#   bash bench/gpu_carry.sh && bash bench/device_twin.sh    # ~5 GB, once, in $TWIN
#
# Needs .whl/ and the Fashion-MNIST files in .data/fashion-mnist/ (bench/gpu_carry.sh makes both).
set -euo pipefail
cd "$(dirname "$0")/.."
TWIN="${TWIN:-${TMPDIR:-/tmp}/sweeps-device-twin}"
OUT="${OUT:-$PWD/bench-out/twin}"
# That machine's versions of what the service imports; the rest of its image is irrelevant here.
BASE=(torch==2.11.0 torchvision==0.26.0 scikit-learn numpy pyyaml typer rich httpx jinja2 pytest)

find_py312() {
  command -v python3.12 2> /dev/null && python3.12 -c "" 2> /dev/null && return
  local root
  root=$(pyenv root 2> /dev/null) || true
  ls "${root:-/nonexistent}"/versions/3.12*/bin/python3.12 2> /dev/null | tail -n 1
}
if [ ! -x "$TWIN/bin/python" ]; then
  PY312="${PY312:-$(find_py312)}"
  [ -n "$PY312" ] || { echo "device_twin: no python3.12 found (set PY312=...)" >&2; exit 1; }
  "$PY312" -m venv "$TWIN"
  "$TWIN/bin/pip" install -q --upgrade pip
  "$TWIN/bin/pip" install -q "${BASE[@]}"
fi
# Whatever the wheelhouse carries must come from it, as there: take out what pip pulled in,
# except what the machine's own packages need (sklearn needs narwhals, which plotly pulls too).
CARRIED=$(sed -n 's/^\([A-Za-z0-9_.]*\)-[0-9].*\.whl\t.*/\1/p' .whl/MANIFEST.txt)
# shellcheck disable=SC2086
DROP=$("$TWIN/bin/python" - "${BASE[*]%%=*}" $CARRIED <<'PYEOF'
import re
import sys
from importlib import metadata

norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
base, carried = sys.argv[1].split(), {norm(n) for n in sys.argv[2:]}
needed, todo = set(), list(base)
while todo:
    try:
        reqs = metadata.requires(todo.pop()) or []
    except metadata.PackageNotFoundError:
        continue
    for req in reqs:
        if "extra ==" not in req:
            name = norm(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
            if name not in needed:
                needed.add(name)
                todo.append(name)
print(" ".join(sorted(carried - needed)))
PYEOF
)
# shellcheck disable=SC2086
[ -z "$DROP" ] || "$TWIN/bin/pip" uninstall -q -y $DROP 2>&1 | grep -v "not installed" || true

rm -rf "$OUT"
GPU_SH_SMOKE=1 PYTHON="$TWIN/bin/python" OUT="$OUT" bash bench/gpu.sh
tar xzf "$OUT"/gpu-pass-*.tar.gz -O stages.tsv | awk -F '\t' '$1 == "install" && $2 == 0 {ok=1} END {exit !ok}' \
  || { echo "device_twin: the wheel install failed (see $OUT)" >&2; exit 1; }
PYTHONPATH="$PWD/.site:$PWD" "$TWIN/bin/python" -m pytest -o addopts="" -p no:cacheprovider \
  -p no:logging --confcutdir=tests/worker/engine -q -m "not long" tests/worker/engine
