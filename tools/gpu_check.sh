#!/usr/bin/env bash
# The GPU check in one command, on a bare GPU machine: install what the kit carries (see
# tools/gpu_kit.py) into a temporary folder, then measure (python -m pipeline.bench_gpu).
# Arguments go to the measurement; results land in $BENCH_GPU_OUT (default bench-out/gpu).
#
#   make gpu-kit                          # here, once: fills .gpu-kit/ (about 56 MiB)
#   BENCH_GPU_OUT=/some/dir bash tools/gpu_check.sh
#   bash tools/gpu_check.sh --dry-run     # the same on the CPU, seconds
#
# PYTHON picks the interpreter (default python3); GPU_KIT the kit (default .gpu-kit).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
KIT=${GPU_KIT:-.gpu-kit}
export PYTHONUNBUFFERED=1
if [ -d "$KIT" ]; then
    SITE=$(mktemp -d)
    trap 'rm -rf "$SITE"' EXIT
    "$PY" tools/gpu_kit.py install --kit "$KIT" --target "$SITE"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -m pipeline.bench_gpu --kit "$KIT" "$@"
