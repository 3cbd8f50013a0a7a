"""Command line: `python -m pipeline IN OUT [options]`."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from config import MODEL_DEFAULTS, Config
from config.settings import ENCODERS, X264_PRESETS
from workers.errors import SyncError

EPILOG = """examples:
  python -m pipeline dance.mp4 out.mp4
  python -m pipeline dance.mp4 out.mp4 --device cuda -b 8
  python -m pipeline dance.mp4 out.mp4 --weights keypointrcnn_resnet50_fpn_coco.pth --no-score
exit codes: 0 done, 1 failed (one line says why), 2 usage error, 130 interrupted"""


def get_args_parser() -> argparse.ArgumentParser:
    """The CLI's parser; `main(parser.parse_args([...]))` runs it without a subprocess."""
    defaults = Config(input=Path("in"), output=Path("out"))
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Score how synchronously the people in a video move, and draw their skeletons.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, help="input video file")
    parser.add_argument("output", type=Path, help="output video file (.mp4)")
    parser.add_argument("--model", choices=sorted(MODEL_DEFAULTS), default=defaults.model,
                        help=f"pose model (default: {defaults.model})")
    parser.add_argument("--weights", default=None,
                        help="weights file (keypointrcnn default: torchvision's, downloaded once into the cache "
                             "under TORCH_HOME; 'random' for untrained weights, tests only; yolo: required, "
                             "e.g. yolo11n-pose.pt)")
    parser.add_argument("--device", default=defaults.device,
                        help="auto, cpu, cuda or cuda:N; auto uses CUDA when available (default: auto)")
    parser.add_argument("-b", "--batch-size", type=int, default=defaults.batch_size,
                        help=f"frames per inference batch, 1..256 (default: {defaults.batch_size})")
    parser.add_argument("--score", action=argparse.BooleanOptionalAction, default=defaults.score,
                        help="compute and show the similarity score and the end card (default: on)")
    parser.add_argument("--person-threshold", type=float, default=None,
                        help="box score above which a detection counts as a person "
                             "(default: the model's, 0.9 for keypointrcnn, 0.5 for yolo)")
    parser.add_argument("--keypoint-threshold", type=float, default=None,
                        help="keypoint score above which a keypoint is drawn "
                             "(default: the model's, 2 for keypointrcnn, 0.5 for yolo)")
    parser.add_argument("--min-size", type=int, default=None, dest="model_min_size",
                        help="model input size, 32..4096: keypointrcnn's shorter side (default 800), "
                             "yolo's longer side (default 640)")
    parser.add_argument("--max-persons", type=int, default=defaults.max_persons,
                        help=f"most persons detected per frame, 1..1000 (default: {defaults.max_persons})")
    parser.add_argument("--poses", type=Path, default=None,
                        help="replay a pose cache (OUT's .poses.npz from an earlier run) instead of running the "
                             "model: re-score and re-draw with other settings (default: run the model)")
    parser.add_argument("--no-save-poses", action="store_false", dest="save_poses",
                        help="do not save the detections beside the output (default: saved as OUT-stem.poses.npz)")
    parser.add_argument("--half", action="store_true", help="fp16 autocast on CUDA (default: off)")
    parser.add_argument("--encoder", choices=ENCODERS, default=defaults.encoder,
                        help="H.264 encoder; auto picks h264_nvenc on a CUDA device when it works (default: auto)")
    parser.add_argument("--preset", choices=X264_PRESETS, default=defaults.x264_preset, dest="x264_preset",
                        help=f"libx264 preset (default: {defaults.x264_preset})")
    parser.add_argument("--crf", type=int, default=defaults.crf,
                        help=f"libx264 quality, 0..51, lower is better (default: {defaults.crf})")
    parser.add_argument("--no-progress", action="store_false", dest="progress",
                        help="no progress bar (default: shown)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks (default: off)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config that parsed arguments describe (ValueError names a bad value)."""
    fields = {name: value for name, value in vars(args).items()}
    return Config(**fields)


def main(args: argparse.Namespace | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = get_args_parser()
    if args is None:
        args = parser.parse_args()
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    try:
        return _run(config)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SyncError as error:
        if config.verbose:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(config: Config) -> int:
    from pipeline.runner import run_video
    from workers.ffmpeg import probe
    from workers.infer import build_estimator
    from workers.poses import CachedPoses, check_matches, load_poses

    if config.output.resolve() == config.input.resolve():
        raise SyncError(f"{config.output}: the output would overwrite its own input")
    info = probe(config.input)
    if config.poses is not None:
        meta, frames = load_poses(config.poses)
        check_matches(config.poses, meta, info, config.model, config.person_min_score)
        estimator = CachedPoses(config.poses, meta, frames)
    else:
        estimator = build_estimator(config)
    result = run_video(config, estimator, info)
    scored = sum(frame.score is not None for frame in result.frames)
    total = "no score" if result.total is None else f"total score {result.total:.2f}"
    print(
        f"{result.output}: {len(result.frames)} frames, {scored} scored, {total}, "
        f"{result.seconds:.1f} s ({result.fps:.1f} frames/s on {result.device}, {result.encoder})",
        file=sys.stderr,
    )
    return 0
