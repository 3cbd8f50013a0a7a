#!/usr/bin/env bash
# The GPU check on a bare GPU machine: install what the kits carry (see bench/gpu_kit.py) into
# .gpu-site/ in the checkout, then measure (python -m bench.gpu). Arguments go to the
# measurement; results land in $BENCH_GPU_OUT (default bench-out/gpu).
#
#   make gpu-kit                          # here, once: fills .gpu-kit-ffmpeg/ and .gpu-kit/
#   bash bench/gpu_check.sh --install-only                # there, call 1, carrying .gpu-kit-ffmpeg
#   BENCH_GPU_OUT=/some/dir bash bench/gpu_check.sh       # there, call 2, carrying .gpu-kit
#   bash bench/gpu_check.sh --dry-run     # here: the same on the CPU, seconds
#
# The two kits together are over what one call may carry, so they travel in two calls; the
# first installs into .gpu-site/, which stays in the checkout while the machine is held. A
# kit that is present is installed; the check starts only when everything it needs imports.
# PYTHON picks the interpreter (default python3); GPU_KIT and GPU_KIT_FFMPEG the kits
# (default .gpu-kit, .gpu-kit-ffmpeg); GPU_SITE the install folder (default .gpu-site).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
KIT=${GPU_KIT:-.gpu-kit}
KIT_FFMPEG=${GPU_KIT_FFMPEG:-.gpu-kit-ffmpeg}
SITE=${GPU_SITE:-.gpu-site}
export PYTHONUNBUFFERED=1
installed=0
for kit in "$KIT_FFMPEG" "$KIT"; do
    if [ -d "$kit" ]; then
        "$PY" -m bench.gpu_kit install --kit "$kit" --target "$SITE"
        echo "installed $kit into $SITE"
        installed=1
    fi
done
if [ -d "$SITE" ]; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi
if ! "$PY" -c "import av, imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe()" 2>/dev/null; then
    echo "missing PyAV or imageio-ffmpeg (installed from kits: $installed): carry $KIT_FFMPEG in a first call" \
         "(bash bench/gpu_check.sh --install-only), then $KIT in the next, while the machine is held" >&2
    exit 3
fi
"$PY" -m bench.gpu --kit "$KIT" "$@"
