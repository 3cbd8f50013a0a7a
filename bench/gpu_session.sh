#!/usr/bin/env bash
# A whole GPU session in one call, on a bare GPU machine (the second call, carrying .gpu-kit,
# after `bash bench/gpu_check.sh --install-only` carried .gpu-kit-ffmpeg): the NVDEC/NVENC
# smoke check (works? how fast is each reader alone?), tests/test_nvcodec_gpu.py, the GPU check's
# codecs step (1080p, 720p), then its jobs step at 1080p in the time left. Results under $OUT
# (smoke.log, tests.log, codecs/, jobs/). The argument: seconds the whole may take (default 520).
#
#   bash bench/gpu_session.sh 520
set -uo pipefail
export PYTHONUNBUFFERED=1
LIMIT=${1:-520}
bash bench/gpu_check.sh --install-only 2>&1 | grep -v WARNING
export PYTHONPATH=.gpu-site
echo "== smoke ($SECONDS s)"
timeout 90 python3 - <<'PY' 2>&1 | tee $OUT/smoke.log
import subprocess, time, traceback
from workers import nvcodec
from workers.decode import VideoReader
from workers.ffmpeg import ffmpeg_exe
from workers.probe import probe
for name, check in (("decoder", nvcodec.check_decoder), ("encoder", nvcodec.check_encoder)):
    try:
        check("cuda:0"); print(name, "check: works")
    except Exception as error:
        print(name, "check:", repr(error)[:400])
clip = "/tmp/smoke1080.mp4"
subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
                "-frames:v", "300", "-c:v", "libx264", "-pix_fmt", "yuv420p", clip], check=True)
info = probe(clip)
for name, make in (("nvdec", lambda: nvcodec.NvdecReader(info, "cuda:0")), ("ffmpeg", lambda: VideoReader(info))):
    try:
        start, count = time.perf_counter(), 0
        with make() as reader:
            for frame in reader:
                count += 1
        print(f"reader {name} 1080p: {count} frames, {count / (time.perf_counter() - start):.1f} f/s")
    except Exception:
        traceback.print_exc()
PY
echo "== tests ($SECONDS s)"
timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_nvcodec_gpu.py 2>&1 | tail -40 | tee $OUT/tests.log
echo "== codecs ($SECONDS s)"
BENCH_GPU_OUT=$OUT/codecs timeout 170 bash bench/gpu_check.sh --steps codecs --sizes 1080,720 --deadline 130 2>&1 \
    | grep -v WARNING | grep -E "^ +[0-9]+ s|failed|Error" | head -20
echo "== jobs ($SECONDS s)"
left=$((LIMIT - SECONDS - 10))
if [ $left -gt 60 ]; then
    BENCH_GPU_OUT=$OUT/jobs timeout $left bash bench/gpu_check.sh --steps jobs --sizes 1080 --deadline $((left - 90)) \
        2>&1 | grep -v WARNING | grep -E "^ +[0-9]+ s|failed|Error" | head -20
fi
echo "== end ($SECONDS s)"
