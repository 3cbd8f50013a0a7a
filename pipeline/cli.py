"""Command line: `python -m pipeline IN OUT [options]`, IN a video file or a folder of them."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from config import Config
from config.settings import CLUSTERS, DECODERS, ENCODERS, MAX_JOBS, X264_PRESETS
from workers.encode import output_container
from workers.errors import DancingSkeletonsError, PoseCacheError, UsageError
from workers.models import model_names
from workers.poses import read_poses_meta
from workers.runtimes import RUNTIME_CHOICES

if TYPE_CHECKING:
    from reports.results import RunResult

log = logging.getLogger("dancingskeletons")

#: Suffixes of the files written beside the video, which the video itself cannot take.
REPORT_SUFFIXES = (".json", ".csv", ".png", ".npz")

EPILOG = """examples:
  python -m pipeline dance.mp4 out.mp4
  python -m pipeline dance.mp4 out.mp4 --device cuda -b 8
  python -m pipeline dance.mp4 out.mp4 --weights keypointrcnn_resnet50_fpn_coco.pth --no-score
  python -m pipeline dance.mp4 out.mp4 --no-video     # no video: out.json, .csv, .persons.csv, .png, .poses.npz
  python -m pipeline duet.mp4 out.mp4 --persons 2 --mirror   # two dancers facing each other
  python -m pipeline class.mp4 out.mp4 --reference teacher.mp4   # each dancer against the teacher
  python -m pipeline class_videos/ results/ --reference teacher.mp4 --offset 12.5   # aligned by hand
  nohup python -m pipeline videos/ results/ --jobs auto --log-file night.log &   # several at once
  RAY_ADDRESS=head:6379 python -m pipeline videos/ results/ --cluster ray   # one task per video
outputs: OUT, and beside it OUT-stem .json (report), .csv (per frame), .png (plot), .poses.npz
folders: every video under IN (recursively) -> the same tree under OUT, plus OUT/summary.csv;
  a video whose outputs are complete and made with the same settings is skipped
exit codes: 0 done (folder: every file done or skipped), 1 failed (folder: any file failed;
  one line says why), 2 usage error, 130 interrupted"""


def _min_size(text: str) -> int | None:
    """`--min-size`: "auto" (None) or a number of pixels (its range is checked by Config)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of pixels, got {text!r}") from None


def get_args_parser() -> argparse.ArgumentParser:
    """The CLI's parser; `main(parser.parse_args([...]))` runs it without a subprocess."""
    defaults = Config(input=Path("in"), output=Path("out"))
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Score how synchronously the people in a video move, and draw their skeletons.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path,
                        help="input video file, or a folder: every video file in its tree is processed")
    parser.add_argument("output", type=Path,
                        help="output video file (.mp4, .mov or .mkv: the container follows the name; an existing "
                             "folder takes INPUT's stem and .mp4), or the output folder when INPUT is a folder")
    parser.add_argument("--model", choices=model_names(), default=None,
                        help=f"pose model (default: {defaults.model}; with --poses, the model the cache was made "
                             "with)")
    parser.add_argument("--weights", default=None,
                        help="weights file (keypointrcnn default: torchvision's, downloaded once into the cache "
                             "under TORCH_HOME; 'random' for untrained weights, tests only; yolo: required, "
                             "e.g. yolo11n-pose.pt)")
    parser.add_argument("--device", default=defaults.device,
                        help="auto, cpu, cuda or cuda:N; auto uses CUDA when available (default: auto)")
    parser.add_argument("--runtime", default=defaults.runtime, choices=RUNTIME_CHOICES,
                        help="what runs the model: torch; or, for --model yolo, an exported copy in openvino or "
                             "onnxruntime on the CPU (`make setup-cpu-fast`; exported once, then cached under "
                             "TORCH_HOME). auto picks openvino on the CPU when it is installed, else torch; on "
                             "CUDA always torch (default: auto)")
    parser.add_argument("-b", "--batch-size", type=int, default=defaults.batch_size,
                        help=f"frames per inference batch, 1..256 (default: {defaults.batch_size})")
    parser.add_argument("--score", action=argparse.BooleanOptionalAction, default=defaults.score,
                        help="compute and show the similarity score and the end card (default: on)")
    parser.add_argument("--persons", default=defaults.persons, metavar="auto|all|N",
                        help="whom the per-person timing analysis scores: auto = the performers (those present most "
                             "of the video who move together above chance; not bystanders or passers-by), all = "
                             "everyone, N = the N most prominent people (default: auto)")
    parser.add_argument("--max-gap", type=float, default=defaults.max_gap_s, dest="max_gap_s", metavar="SECONDS",
                        help="longest absence (hidden behind someone, or out of the frame) after which a person is "
                             f"recognised again and keeps the id, 0.01..600 (default: {defaults.max_gap_s:g})")
    parser.add_argument("--mirror", action="store_true",
                        help="people moving as mirror images of each other (facing each other) count as in sync; "
                             "with --reference, the teacher faces the class (default: off; with --reference, "
                             "detected)")
    parser.add_argument("--reference", type=Path, default=None, metavar="TEACHER",
                        help="score every performer against a teacher's video (or its .poses.npz): lag behind the "
                             "teacher, pose and timing scores, the late limb; the two recordings are aligned by "
                             "their music, else by the movement; the teacher's poses are computed once and cached "
                             "(default: the performers against each other only)")
    parser.add_argument("--reference-person", type=int, default=None, metavar="ID",
                        help="--reference: the teacher's id in the reference video (default: its most prominent "
                             "person; the log names the others)")
    parser.add_argument("--offset", type=float, default=None, metavar="SECONDS",
                        help="--reference: where the teacher's video starts in the input, seconds (negative: "
                             "before it); skips the automatic alignment (default: by the music, else by the "
                             "movement)")
    parser.add_argument("--no-reference-inset", action="store_false", dest="reference_inset",
                        help="--reference: no picture of the time-aligned teacher in the video's corner "
                             "(default: shown)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="folder runs: process only every N-th file from the I-th (1 <= I <= N), so that N "
                             "machines or a Slurm job array split one folder; merge their summaries with "
                             "`python -m reports.merge OUT` (default: every file)")
    parser.add_argument("--jobs", default=defaults.jobs, metavar="N|auto",
                        help="folder runs: videos processed at once on this machine, each in a worker process of "
                             "its own, the CPU cores split between them; auto: as many as the cores (2 a video), "
                             "the memory and the GPU's memory allow (the log's first line says why); more than "
                             f"the files is the files, 1..{MAX_JOBS} (default: {defaults.jobs})")
    parser.add_argument("--cluster", choices=CLUSTERS, default=None,
                        help="folder runs: run on a cluster, one task per video; ray = the Ray cluster that "
                             "RAY_ADDRESS names, else the one `ray start` runs on this machine (needs "
                             "`make setup-ray`; default: here)")
    parser.add_argument("--gpus-per-video", type=float, default=None, metavar="G",
                        help="--cluster: the share of a GPU each video asks for, 0..1; 0.5 puts two videos on one GPU "
                             "(default: 1 when the cluster has GPUs and --device is not cpu, else 0)")
    parser.add_argument("--cpus-per-video", type=float, default=defaults.cpus_per_video, metavar="C",
                        help=f"--cluster: CPUs each video asks for, 0..1024 (default: {defaults.cpus_per_video:g})")
    parser.add_argument("--retries", type=int, default=defaults.retries, metavar="N",
                        help=f"--jobs and --cluster: times a video is started again when its worker process (or "
                             f"node) died, 0..100; "
                             f"a bad video is never retried (default: {defaults.retries})")
    parser.add_argument("--person-threshold", type=float, default=None,
                        help="box score above which a detection counts as a person "
                             "(default: the model's, 0.9 for keypointrcnn, 0.5 for yolo)")
    parser.add_argument("--keypoint-threshold", type=float, default=None,
                        help="keypoint score above which a keypoint is drawn "
                             "(default: the model's, 2 for keypointrcnn, 0.5 for yolo)")
    parser.add_argument("--min-size", type=_min_size, default=None, dest="model_min_size",
                        help="model input size, 32..4096: keypointrcnn's shorter side (its default 800), "
                             "yolo's longer side (its default 640); default auto: the model's default, "
                             "raised per video when a few frames show small people")
    parser.add_argument("--max-persons", type=int, default=defaults.max_persons,
                        help=f"most persons detected per frame, 1..1000 (default: {defaults.max_persons})")
    parser.add_argument("--poses", type=Path, default=None,
                        help="replay a pose cache (OUT's .poses.npz from an earlier run) instead of running the "
                             "model: re-score and re-draw with other settings (default: run the model)")
    parser.add_argument("--no-save-poses", action="store_false", dest="save_poses",
                        help="do not save the detections beside the output (default: saved as OUT-stem.poses.npz)")
    parser.add_argument("--infer-every", type=int, default=defaults.infer_every, metavar="K",
                        help="run the model on every K-th frame only, interpolating the persons between "
                             "(faster, less exact; default: 1, every frame)")
    parser.add_argument("--half", action="store_true", help="fp16 autocast on CUDA (default: off)")
    parser.add_argument("--encoder", choices=ENCODERS, default=defaults.encoder,
                        help="H.264 encoder: nvenc (the GPU's, through PyNvVideoCodec), h264_nvenc (the GPU's, "
                             "through ffmpeg) or libx264 (the CPU); auto takes the first that works on a CUDA "
                             "device, else libx264 (default: auto)")
    parser.add_argument("--decoder", choices=DECODERS, default=defaults.decoder,
                        help="video decoder: nvdec (the GPU's, through PyNvVideoCodec: frames go to the model "
                             "without leaving the GPU) or ffmpeg (the CPU); auto takes nvdec on a CUDA device "
                             "when it works, else ffmpeg (default: auto)")
    parser.add_argument("--preset", choices=X264_PRESETS, default=defaults.x264_preset, dest="x264_preset",
                        help=f"libx264 preset (default: {defaults.x264_preset})")
    parser.add_argument("--crf", type=int, default=defaults.crf,
                        help=f"libx264 quality, 0..51, lower is better (default: {defaults.crf})")
    parser.add_argument("--no-video", action="store_false", dest="video",
                        help="write the reports (.json, .csv, .persons.csv, .png) and the pose cache only: no "
                             "drawing, no encoding (default: the video too)")
    # Not for users: the GPU check's --jobs rows run this CLI on clips of a few seconds, where
    # the 5-second end card would be more of the work than the video.
    parser.add_argument("--end-card-seconds", type=float, default=defaults.end_card_seconds, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_false", dest="progress",
                        help="no progress display (default: bars on a terminal, else a log line every "
                             "--log-interval seconds)")
    parser.add_argument("--log-interval", type=float, default=defaults.log_interval, metavar="SECONDS",
                        help=f"seconds between progress lines when stderr is not a terminal "
                             f"(default: {defaults.log_interval:g})")
    parser.add_argument("--log-file", type=Path, default=None, metavar="PATH",
                        help="also append the log (per-file results, errors with tracebacks, progress lines) "
                             "to this file (default: stderr only)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks (default: off)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config that parsed arguments describe (ValueError names a bad value).

    Without `--model`, a replay (`--poses`) takes the model from the cache's header, so that
    its thresholds are that model's; an unreadable cache is reported when the run opens it.
    """
    fields = {name: value for name, value in vars(args).items()}
    if fields.get("model") is None:
        fields.pop("model", None)
        if fields.get("poses") is not None:
            try:
                cached = read_poses_meta(fields["poses"]).model
            except PoseCacheError:
                cached = None
            if cached in model_names():  # else the run refuses the cache, naming its model
                fields["model"] = cached
    return Config(**fields)


def main(args: argparse.Namespace | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = get_args_parser()
    if args is None:
        args = parser.parse_args()
    try:
        config = config_from_args(args)
        folder = config.input.is_dir()
        if folder:
            _check_folder_args(config)
        elif config.shard is not None:
            raise UsageError("--shard splits a folder run; INPUT is a single file")
        elif config.cluster is not None:
            raise UsageError("--cluster runs a folder; INPUT is a single file")
        elif config.jobs not in (1, "auto"):
            raise UsageError(f"--jobs {config.jobs} runs several videos of a folder at once; INPUT is a single file "
                             "(one video runs as one job)")
        elif config.output.suffix.lower() in REPORT_SUFFIXES:
            raise UsageError(f"{config.output}: OUTPUT names the video (.mp4); the {config.output.suffix} report "
                             "is written beside it")
        elif not config.output.is_dir():
            output_container(config.output)
    except ValueError as error:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    bars = config.progress and _stderr_is_terminal()
    with _logging(config, bars), _sigterm_interrupts():
        try:
            return _run_folder(config, bars) if folder else _run(config, bars)
        except KeyboardInterrupt:
            log.error("interrupted")
            return 130
        except DancingSkeletonsError as error:
            log.error("error: %s", error)
            log.debug("traceback", exc_info=error)
            return 2 if isinstance(error, UsageError) else 1


def _check_folder_args(config: Config) -> None:
    from pipeline.folder import VIDEO_EXTENSIONS

    if config.output.exists() and not config.output.is_dir():
        raise UsageError(f"{config.output}: INPUT is a folder, so OUTPUT must be a folder, but it is a file")
    if not config.output.exists() and config.output.suffix.lower() in VIDEO_EXTENSIONS:
        raise UsageError(f"{config.output}: INPUT is a folder, so OUTPUT must be a folder, not a video file name")
    if config.poses is not None:
        raise UsageError("--poses replays one video's poses; it cannot be used with a folder")
    if config.cluster is None and config.gpus_per_video is not None:
        raise UsageError("--gpus-per-video is for --cluster runs")


def _run(config: Config, bars: bool) -> int:
    from pipeline.progress import make_progress
    from pipeline.runner import process_video
    from reports.report import describe
    from workers.models import load_estimator
    from workers.poses import CachedPoses, check_matches
    from workers.probe import probe

    if config.output.is_dir():
        config = config.replace(output=config.output / f"{config.input.stem}.mp4")
    if config.output.resolve() == config.input.resolve():
        raise DancingSkeletonsError(f"{config.output}: the output would overwrite its own input")
    started = time.perf_counter()
    info = probe(config.input)
    probe_seconds = time.perf_counter() - started
    estimator = load_estimator(config)
    if isinstance(estimator, CachedPoses):
        assert config.poses is not None
        check_matches(config.poses, estimator.meta, info, config.model, config.person_threshold_in_effect)
    teacher = None
    if config.reference is not None:
        from pipeline.reference import prepare_reference

        teacher = prepare_reference(config, estimator).setup_for(info, config)
    progress = make_progress(config, bars)
    progress.begin(1)
    progress.start_file(1, config.input.name)
    progress.expect_frames(info.expected_frames)
    try:
        result, report = process_video(config, estimator, info, progress.advance, probe_seconds, teacher=teacher)
    finally:
        progress.close()
    log.info(
        "%s: %s, %.1f s (%.1f frames/s on %s, %s)",
        result.output or config.output.with_suffix(".json"), describe(report),
        report["timings"]["total_seconds"], result.fps, _where(result), result.encoder or "no video",
    )
    return 0


def _where(result: RunResult) -> str:
    """Where the model ran, for the log: "cpu", "cuda:0", "cpu, openvino"."""
    if result.runtime in (None, "torch"):
        return result.device
    return f"{result.device}, {result.runtime}"


def _run_folder(config: Config, bars: bool) -> int:
    from pipeline.folder import exit_code, run_folder
    from pipeline.progress import make_progress
    from workers.models import load_estimator

    if config.cluster == "ray":
        from pipeline.cluster import run_folder_on_ray

        rows = run_folder_on_ray(config, config.input, config.output, make_progress(config, bars))
    elif config.jobs != 1:
        from pipeline.jobs import run_folder_in_jobs

        rows = run_folder_in_jobs(config, config.input, config.output, make_progress(config, bars))
    else:
        rows = run_folder(
            config, config.input, config.output, lambda: load_estimator(config), make_progress(config, bars),
        )
    return exit_code(rows)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _StderrHandler(logging.Handler):
    """Log records to the current sys.stderr, through tqdm so that bars stay intact.

    Progress lines (records with `progress=True`) are left out while bars are shown.
    """

    def __init__(self, level: int, bars: bool) -> None:
        super().__init__(level)
        self.bars = bars

    def emit(self, record: logging.LogRecord) -> None:
        if self.bars and getattr(record, "progress", False):
            return
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


@contextmanager
def _logging(config: Config, bars: bool) -> Iterator[None]:
    """Log to stderr (tracebacks only with --verbose) and, with --log-file, to that file
    (timestamped, tracebacks always) for the duration of a run."""
    handlers: list[logging.Handler] = [_StderrHandler(logging.DEBUG if config.verbose else logging.INFO, bars)]
    if config.log_file is not None:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(config.log_file, mode="a", encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        to_file.setLevel(logging.DEBUG)
        handlers.append(to_file)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for handler in handlers:
        log.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM (`kill`, a shutdown) like Ctrl-C, so that partial outputs are cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
