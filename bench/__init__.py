"""What measures us: the benchmarks and the GPU check, kept apart from the product's run path.

Nothing in `pipeline/` or `workers/` imports from here; these modules import from there.

    python -m bench                  # `make bench`: each model alone against the whole pipeline
    python -m bench.ray_folder       # `make bench-ray`: a folder run on Ray against a local one
    bash bench/gpu_check.sh          # `make bench-gpu`: the GPU check on a bare GPU machine
    python -m bench.gpu --dry-run    # the GPU check's code on the CPU, in seconds
    python -m bench.gpu_kit make     # `make gpu-kit`: what the GPU machine lacks, packed to carry
    python -m bench.rcnn_openvino    # the Keypoint R-CNN through OpenVINO trial
"""
