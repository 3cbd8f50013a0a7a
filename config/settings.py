"""Every knob of the tool with its default, in one frozen dataclass.

The CLI only fills a `Config`; every stage reads what it needs from it. Values are validated
when the object is made, with the allowed range in the message.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.models import ModelDefaults, get_model
from workers.runtimes import check_runtime_request, is_exported
from workers.score import ScoreParams

_SCORE = ScoreParams()

#: Settings that change neither the numbers nor the pixels a run produces: where it reads and
#: writes, how fast it goes, what it shows, and which outputs it writes (`video`, `save_poses`:
#: a missing output is redone anyway). Every other setting is part of a report's fingerprint,
#: so a new field counts as result-changing until it is listed here.
RUN_ONLY_SETTINGS = frozenset({
    "input", "output", "poses", "video", "save_poses", "device", "runtime", "batch_size", "queue_size",
    "queue_megabytes",
    "stall_timeout", "ffmpeg_nice", "progress", "verbose", "log_file", "log_interval", "shard",
    "cluster", "gpus_per_video", "cpus_per_video", "retries", "jobs", "cpu_threads", "decoder",
})
#: Most videos a folder run processes at once on one machine (`--jobs`).
MAX_JOBS = 256
CLUSTERS = ("ray",)

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
ENCODERS = ("auto", "libx264", "h264_nvenc", "nvenc")
DECODERS = ("auto", "ffmpeg", "nvdec")
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)


@dataclass(frozen=True)
class Config:
    """Everything one run needs.

    Attributes:
        input: Input video file.
        output: Output video file (.mp4).
        model: Pose model name.
        weights: Local weights file; None for the model's default (downloaded and cached by
            torchvision); "random" for randomly initialised weights (tests only).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        runtime: What runs the model (workers.runtimes): "auto" (OpenVINO on the CPU when it is
            installed and the model can be exported, else torch), "torch", "openvino" or
            "onnxruntime" (the last two on the CPU; with device "auto" they imply it).
        batch_size: Frames per inference batch.
        score: Compute and show the score (and the end card); False draws skeletons only.
        verbose: Show tracebacks and ffmpeg's messages.
        person_threshold: Box score above which a detection is a person; None for the
            model's default.
        keypoint_threshold: Keypoint score above which a keypoint is drawn; None for the
            model's default.
        keypoint_weighting: See ModelDefaults; None for the model's default.
        distance_offset: Mean distance that still scores the maximum.
        distance_scale: Mean distance range over which the score falls from max to 0.
        score_max: The best score.
        display_window: Frames (with persons) averaged for the on-screen score.
        end_card_seconds: Length of the end card with the total score.
        model_min_size: The model's input size: Keypoint R-CNN's min_size (shorter side,
            default 800); YOLO's imgsz (longer side, default 640). None: chosen per video
            from the people's size, never below the model's default (workers.input_size).
        max_persons: Most persons the model returns per frame (the most confident).
        infer_every: Run the model on every k-th frame only and interpolate the persons of the
            frames between (a speed setting: see docs/BENCHMARKS.md for what it changes).
        half: Run the model under fp16 autocast (CUDA only).
        queue_size: Frames each queue between stages holds at most.
        queue_megabytes: Memory each queue may hold: large frames get fewer slots (at least
            2), so a 4K video does not take 8 times a 720p one's memory.
        encoder: "auto" (on a CUDA device the first that works of NVENC through PyNvVideoCodec,
            ffmpeg's h264_nvenc; else libx264), "libx264", "h264_nvenc" or "nvenc".
        decoder: "auto" (NVDEC through PyNvVideoCodec on a CUDA device when it works, else
            ffmpeg), "ffmpeg" or "nvdec" (`workers.nvcodec`).
        x264_preset: libx264 speed preset.
        crf: libx264 constant rate factor (quality; lower is better, 0..51).
        poses: A pose cache to replay instead of running the model (re-score and re-draw).
        save_poses: Save every frame's detections beside the output (`<stem>.poses.npz`).
        stall_timeout: Seconds without progress from an ffmpeg process before the run is
            stopped as stalled.
        ffmpeg_nice: Niceness added to the decoding and encoding ffmpeg processes, so that on
            a saturated CPU they fill the model's idle moments instead of preempting it
            (measured with `make bench`, see docs/BENCHMARKS.md).
        progress: Show progress: bars on a terminal, periodic log lines otherwise.
        video: Write the annotated video; False writes the reports only (no drawing, no
            encode stage).
        log_file: Also append the run's log (one line per file, errors, progress lines) to
            this file; None for stderr only.
        log_interval: Seconds between progress log lines when stderr is not a terminal.
        persons: Whom the per-person timing analysis scores: "auto" (the performers: those
            who move together above chance, not bystanders or passers-by; see
            `workers.analysis`), "all", or a number N >= 1 (the N most prominent people; a
            string of digits is accepted).
        max_gap_s: Longest absence (hidden, or out of the frame) after which a person is
            still recognised and keeps the id, seconds (`workers.identity`).
        identity_lookahead_s: How long a new tracklet is watched before its identity is decided,
            seconds; the drawing waits that long, holding the frames in memory.
        lookahead_megabytes: Most memory the frames held for the look-ahead may take: for
            large frames the look-ahead is shortened to fit (a 4K video at 60 fps gets about
            0.7 s of the default 1 s).
        mirror: Compare people also as mirror images (left and right swapped), so that two
            people facing each other and moving as mirror images count as in sync.
        shard: A folder run's share, "I/N" (1 <= I <= N): every N-th of the planned files,
            from the I-th, so that N machines (a Slurm job array, say) split one folder;
            None for all of them.
        cluster: Run a folder on a cluster: "ray" (the Ray cluster that RAY_ADDRESS names, or
            that `ray start` left running on this machine); None runs it here.
        gpus_per_video: Cluster runs: the share of a GPU each video's task asks for, 0..1 (a
            video runs on one GPU; 0.5 puts two on one GPU); None for 1 when the cluster has GPUs
            and the device is not "cpu", else 0.
        cpus_per_video: Cluster runs: CPUs each video's task asks for (decoding, drawing and
            encoding run on them; on a CPU-only cluster, the model's threads too).
        retries: Folder runs on a cluster or with several jobs: how often a video whose worker
            process or node died is started again (a bad video is never retried: it is a failed
            row).
        jobs: Folder runs: videos processed at once on this machine, each in a worker process
            of its own (`pipeline.jobs`): 1..MAX_JOBS, or "auto" (chosen from the cores, the memory
            and the GPU's memory; a string of digits is accepted).
        cpu_threads: CPU threads one video may use for the model (torch, OpenVINO, ONNX Runtime),
            OpenCV, and ffmpeg's decoder and libx264; None for every core. Several jobs on one
            machine split the cores between them.
        reference: A teacher's video (or its pose cache, `.poses.npz`) to score every performer
            against (`workers.reference`); None compares the performers with each other only.
        reference_person: The teacher's id in the reference video; None for its most
            prominent person.
        offset: Where the reference's time 0 falls in the input video, seconds (negative:
            before it starts); None aligns the two automatically, by their music, else by the
            movement.
        reference_inset: Show the time-aligned teacher with its skeleton in a corner of the
            annotated video.
    """

    input: Path
    output: Path
    model: str = "keypointrcnn"
    weights: str | None = None
    device: str = "auto"
    runtime: str = "auto"
    batch_size: int = 4
    score: bool = True
    verbose: bool = False
    person_threshold: float | None = None
    keypoint_threshold: float | None = None
    keypoint_weighting: str | None = None
    # The original score's constants: their one source is workers.score.ScoreParams.
    distance_offset: float = _SCORE.distance_offset
    distance_scale: float = _SCORE.distance_scale
    score_max: float = _SCORE.score_max
    display_window: int = _SCORE.display_window
    end_card_seconds: float = 5.0
    model_min_size: int | None = None
    max_persons: int = 30
    infer_every: int = 1
    half: bool = False
    queue_size: int = 8
    queue_megabytes: int = 64
    encoder: str = "auto"
    decoder: str = "auto"
    x264_preset: str = "veryfast"
    crf: int = 20
    poses: Path | None = None
    save_poses: bool = True
    stall_timeout: float = 120.0
    ffmpeg_nice: int = 10
    progress: bool = True
    video: bool = True
    log_file: Path | None = None
    log_interval: float = 60.0
    persons: str | int = "auto"
    max_gap_s: float = 3.0
    identity_lookahead_s: float = 1.0
    lookahead_megabytes: int = 1024
    mirror: bool = False
    shard: str | None = None
    cluster: str | None = None
    gpus_per_video: float | None = None
    cpus_per_video: float = 2.0
    retries: int = 1
    jobs: int | str = 1
    cpu_threads: int | None = None
    reference: Path | None = None
    reference_person: int | None = None
    offset: float | None = None
    reference_inset: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", Path(self.input))
        object.__setattr__(self, "output", Path(self.output))
        if self.poses is not None:
            object.__setattr__(self, "poses", Path(self.poses))
        if self.log_file is not None:
            object.__setattr__(self, "log_file", Path(self.log_file))
        if self.reference is not None:
            object.__setattr__(self, "reference", Path(self.reference))
        get_model(self.model)  # ValueError naming the registered models
        if not DEVICE_PATTERN.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check_runtime_request(self.runtime, self.model, get_model(self.model).runtimes, self.device)
        _check_range("batch_size", self.batch_size, 1, 256, integer=True)
        _check_range("display_window", self.display_window, 1, 10_000, integer=True)
        _check_range("queue_size", self.queue_size, 1, 1024, integer=True)
        _check_range("queue_megabytes", self.queue_megabytes, 1, 65536, integer=True)
        _check_range("crf", self.crf, 0, 51, integer=True)
        _check_range("max_persons", self.max_persons, 1, 1000, integer=True)
        _check_range("infer_every", self.infer_every, 1, 100, integer=True)
        _check_range("ffmpeg_nice", self.ffmpeg_nice, 0, 19, integer=True)
        _check_range("distance_scale", self.distance_scale, 1e-9, None)
        _check_range("score_max", self.score_max, 1e-9, None)
        _check_range("end_card_seconds", self.end_card_seconds, 0.0, 3600.0)
        _check_range("stall_timeout", self.stall_timeout, 0.1, None)
        _check_range("log_interval", self.log_interval, 0.0, None)
        if self.person_threshold is not None:
            _check_range("person_threshold", self.person_threshold, None, None)
        if self.keypoint_threshold is not None:
            _check_range("keypoint_threshold", self.keypoint_threshold, None, None)
        _check_range("distance_offset", self.distance_offset, None, None)
        if self.model_min_size is not None:
            _check_range("model_min_size", self.model_min_size, 32, 4096, integer=True)
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.x264_preset not in X264_PRESETS:
            raise ValueError(f"x264_preset must be one of {', '.join(X264_PRESETS)}, got {self.x264_preset!r}")
        object.__setattr__(self, "persons", _persons_mode(self.persons))
        if self.shard is not None:
            parse_shard(self.shard)
        if self.cluster is not None and self.cluster not in CLUSTERS:
            raise ValueError(f"cluster must be one of {', '.join(CLUSTERS)}, got {self.cluster!r}")
        if self.cluster is not None and self.device.startswith("cuda:"):
            raise ValueError(f"device {self.device} pins one GPU, but on a cluster Ray assigns each video its GPU; "
                             "use --device cuda or auto")
        if self.gpus_per_video is not None:
            _check_range("gpus_per_video", self.gpus_per_video, 0.0, 1.0)
            if self.gpus_per_video == 0 and self.device.startswith("cuda"):
                raise ValueError(f"device {self.device} needs a GPU, but gpus_per_video is 0")
            if self.gpus_per_video > 0 and is_exported(self.runtime):
                raise ValueError(f"runtime {self.runtime} runs the model on the CPU, but gpus_per_video is "
                                 f"{self.gpus_per_video:g}; use 0")
        _check_range("cpus_per_video", self.cpus_per_video, 0.0, 1024.0)
        _check_range("retries", self.retries, 0, 100, integer=True)
        object.__setattr__(self, "jobs", _jobs_mode(self.jobs))
        if self.jobs != 1 and self.cluster is not None:
            raise ValueError("jobs runs several videos on this machine; with a cluster, Ray decides "
                             "(--gpus-per-video, --cpus-per-video)")
        if self.cpu_threads is not None:
            _check_range("cpu_threads", self.cpu_threads, 1, 4096, integer=True)
        _check_range("max_gap_s", self.max_gap_s, 0.01, 600.0)
        _check_range("identity_lookahead_s", self.identity_lookahead_s, 0.01, 60.0)
        _check_range("lookahead_megabytes", self.lookahead_megabytes, 1, 1 << 20, integer=True)
        if not isinstance(self.mirror, bool):
            raise ValueError(f"mirror must be true or false, got {self.mirror!r}")
        if self.reference_person is not None:
            _check_range("reference_person", self.reference_person, 1, None, integer=True)
        if self.offset is not None:
            _check_range("offset", self.offset, -86400.0, 86400.0)
        if not isinstance(self.reference_inset, bool):
            raise ValueError(f"reference_inset must be true or false, got {self.reference_inset!r}")
        if self.reference is None and (self.reference_person is not None or self.offset is not None):
            raise ValueError("reference_person and offset need a reference video (--reference)")
        if self.keypoint_weighting not in (None, "relu", "logit"):
            raise ValueError(f"keypoint_weighting must be relu or logit, got {self.keypoint_weighting!r}")

    @property
    def model_defaults(self) -> ModelDefaults:
        return get_model(self.model).defaults

    @property
    def person_threshold_in_effect(self) -> float:
        """The person threshold in effect (the model's default unless set)."""
        if self.person_threshold is None:
            return self.model_defaults.person_threshold
        return self.person_threshold

    @property
    def keypoint_min_score(self) -> float:
        """The keypoint drawing threshold in effect."""
        if self.keypoint_threshold is None:
            return self.model_defaults.keypoint_threshold
        return self.keypoint_threshold

    @property
    def weighting(self) -> str:
        """The keypoint weighting in effect."""
        return self.keypoint_weighting or self.model_defaults.keypoint_weighting

    def queue_slots(self, width: int, height: int) -> int:
        """Frames a queue holds for frames of this size: `queue_size`, fewer for large frames."""
        frame_megabytes = width * height * 3 / 2**20
        return max(2, min(self.queue_size, int(self.queue_megabytes // frame_megabytes)))

    def lookahead_frames(self, width: int, height: int, fps: float) -> int:
        """Frames held for the identity look-ahead: `identity_lookahead_s`, fewer where frames
        of this size would take more than `lookahead_megabytes` (at least 2)."""
        frame_megabytes = width * height * 3 / 2**20
        wanted = max(1, round(self.identity_lookahead_s * fps))
        return max(2, min(wanted, int(self.lookahead_megabytes // frame_megabytes)))

    def detection_settings(self) -> dict[str, object]:
        """The settings that change what the model detects (recorded in the pose cache)."""
        return {
            "weights": self.weights,
            "model_min_size": self.model_min_size,
            "person_threshold": self.person_threshold_in_effect,
            "max_persons": self.max_persons,
            "infer_every": self.infer_every,
            "half": self.half,
        }

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        """Every setting as JSON-friendly values, thresholds resolved."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["input"] = str(self.input)
        values["output"] = str(self.output)
        values["poses"] = None if self.poses is None else str(self.poses)
        values["log_file"] = None if self.log_file is None else str(self.log_file)
        values["reference"] = None if self.reference is None else str(self.reference)
        values["person_threshold"] = self.person_threshold_in_effect
        values["keypoint_threshold"] = self.keypoint_min_score
        values["keypoint_weighting"] = self.weighting
        return values

    def result_settings(self) -> dict[str, object]:
        """The settings that change what a run produces (`as_dict` less RUN_ONLY_SETTINGS)."""
        return {name: value for name, value in self.as_dict().items() if name not in RUN_ONLY_SETTINGS}


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N), 1 <= I <= N (ValueError names the form)."""
    parts = str(text).split("/")
    if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
        index, count = int(parts[0]), int(parts[1])
        if 1 <= index <= count:
            return index, count
    raise ValueError(f"shard must be I/N with 1 <= I <= N (e.g. 2/8), got {text!r}")


def _persons_mode(value: object) -> str | int:
    """"auto", "all" or a positive int, from the value or its text ("3" -> 3)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value in ("auto", "all") or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"persons must be auto, all or a number of persons 1..inf, got {value!r}")


def _jobs_mode(value: object) -> str | int:
    """"auto" or a number of jobs 1..MAX_JOBS, from the value or its text ("3" -> 3)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_JOBS):
        return value
    raise ValueError(f"jobs must be auto or a number of videos at once 1..{MAX_JOBS}, got {value!r}")


def _check_range(name: str, value: float, low: float | None, high: float | None, integer: bool = False) -> None:
    """ValueError naming the setting unless `value` is a number (a whole one with `integer`;
    never NaN) within [low, high] (None: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{'-inf' if low is None else low}..{'inf' if high is None else high}"
        raise ValueError(f"{name} must be in {bounds}, got {value}")
