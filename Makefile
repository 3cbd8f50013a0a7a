# DancingSkeletons. `make run IN=dance.mp4 OUT=out.mp4` sets itself up on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
#: Non-empty where an NVIDIA driver is installed: `make run` then sets up the GPU video decoder too.
NVIDIA_DRIVER := $(shell command -v nvidia-smi 2>/dev/null)
IN     ?=
OUT    ?=
MODEL  ?=
WEIGHTS ?=
DEVICE ?=
BATCH  ?=
ARGS   ?=

.PHONY: setup setup-yolo setup-cpu-fast setup-ray setup-nvcodec setup-dev run test test-quick lint bench bench-ray bench-jobs bench-gpu gpu-kit clean

# A stamp per requirements file: editing one reinstalls it.
$(VENV)/.requirements: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The optional YOLO-pose model (ultralytics, AGPL-3.0). --no-deps: ultralytics asks for
# opencv-python, which would overwrite opencv-python-headless's cv2 (see the file).
$(VENV)/.requirements-yolo: requirements-yolo.txt $(VENV)/.requirements
	$(PY) -m pip install --quiet --no-deps -r requirements-yolo.txt
	touch $@

# The optional CPU runtimes for YOLO-pose (OpenVINO, ONNX Runtime). --no-deps keeps OpenVINO's
# telemetry package out (see the file).
$(VENV)/.requirements-cpu-fast: requirements-cpu-fast.txt $(VENV)/.requirements-yolo
	$(PY) -m pip install --quiet --no-deps -r requirements-cpu-fast.txt
	touch $@

# The optional GPU video decoder and encoder (NVIDIA's PyNvVideoCodec, `--decoder nvdec`,
# `--encoder nvenc`): `make run` installs it where an NVIDIA driver is (nvidia-smi), or where
# ARGS asks for it; never imported without CUDA.
# A failed install (no wheel for this platform) is not a failed run: ffmpeg decodes instead.
$(VENV)/.requirements-nvcodec: requirements-nvcodec.txt $(VENV)/.requirements
	$(PY) -m pip install --quiet -r requirements-nvcodec.txt && touch $@ \
		|| echo "PyNvVideoCodec could not be installed: videos are decoded and encoded by ffmpeg" >&2

# The optional Ray engine for `--cluster ray` (a folder over several machines).
$(VENV)/.requirements-ray: requirements-ray.txt $(VENV)/.requirements
	$(PY) -m pip install --quiet -r requirements-ray.txt
	touch $@

$(VENV)/.requirements-dev: requirements-dev.txt $(VENV)/.requirements $(VENV)/.requirements-yolo $(VENV)/.requirements-cpu-fast $(VENV)/.requirements-ray
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.requirements

setup-yolo: $(VENV)/.requirements-yolo

setup-cpu-fast: $(VENV)/.requirements-cpu-fast

setup-ray: $(VENV)/.requirements-ray

setup-nvcodec: $(VENV)/.requirements-nvcodec

setup-dev: $(VENV)/.requirements-dev

run: setup $(if $(filter yolo,$(MODEL)),setup-yolo) $(if $(findstring --runtime openvino,$(ARGS))$(findstring --runtime onnxruntime,$(ARGS)),setup-cpu-fast) $(if $(findstring --cluster,$(ARGS)),setup-ray) $(if $(NVIDIA_DRIVER)$(findstring nvdec,$(ARGS))$(findstring nvenc,$(ARGS)),setup-nvcodec)
	@test -n "$(IN)" -a -n "$(OUT)" || { echo "usage: make run IN=input.mp4 OUT=output.mp4 (or IN=folder/ OUT=outfolder/) [MODEL=] [WEIGHTS=] [DEVICE=] [BATCH=] [ARGS=...]" >&2; exit 2; }
	$(PY) -m pipeline "$(IN)" "$(OUT)" $(if $(MODEL),--model $(MODEL)) $(if $(WEIGHTS),--weights "$(WEIGHTS)") $(if $(DEVICE),--device $(DEVICE)) $(if $(BATCH),--batch-size $(BATCH)) $(ARGS)

# The Ray cluster tests start and stop their own cluster: they run in a pytest process of their
# own (inside the whole suite's process their Ctrl-C test missed its 60 s limit; alone it takes 20 s).
# Both on TEST_WORKERS processes (pytest-xdist): on 2 cores the tests outside Ray took 10:20
# instead of 12:48 (docs/BENCHMARKS.md, "The renovation (issue 24)"). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: setup-dev
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests --ignore=tests/test_cluster.py
	$(PY) -m pytest -q tests/test_cluster.py

# The inner loop: every test but the slow modules (real footage and models, browser, cluster;
# tests/conftest.py SLOW_MODULES). `make test` stays the whole suite, and what CI runs.
test-quick: setup-dev
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" tests --ignore=tests/test_cluster.py

# Style and types, no warnings allowed (settings in pyproject.toml); CI runs it before the tests.
lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: setup-dev
	$(PY) -m bench $(ARGS)

# What a folder run on Ray costs against a local one, on a one-machine cluster (docs/BENCHMARKS.md, "Ray").
# Several videos at once (--jobs) on a simulated device: see bench/jobs.py.
bench-jobs: setup-dev
	$(PY) -m bench.jobs $(ARGS)

bench-ray: setup-dev
	$(PY) -m bench.ray_folder $(ARGS)

# The GPU check (docs/BENCHMARKS.md, "GPU"): `make gpu-kit` here fills .gpu-kit-ffmpeg/ and .gpu-kit/ with what a
# bare, offline GPU machine lacks; there, `bash bench/gpu_check.sh` (or `make bench-gpu`)
# installs it and measures. Here, without a GPU: make bench-gpu ARGS=--dry-run
gpu-kit: setup
	$(PY) -m bench.gpu_kit make

bench-gpu:
	PYTHON=$(if $(wildcard $(PY)),$(PY),$(PYTHON)) bash bench/gpu_check.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
