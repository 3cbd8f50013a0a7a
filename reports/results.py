"""What a finished run hands to the reports, the folder run and the benchmarks.

The per-frame and per-person types are made by the stages in `workers/` and re-exported here,
so that a reader of results needs this module only, not the threads of `pipeline.runner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workers.analysis import Group, IdentitySummary, PersonResult
from workers.data import VideoInfo
from workers.input_size import InputSize
from workers.moments import Moment
from workers.records import FrameResult, FrameTable
from workers.reference import ReferenceAnalysis, TeacherSetup
from workers.sync import SyncResult

__all__ = ["FrameResult", "FrameTable", "Group", "IdentitySummary", "PersonResult", "RunResult", "StageTime"]


@dataclass(frozen=True)
class StageTime:
    """How a pipeline stage spent a run.

    Attributes:
        busy: Seconds spent working.
        waiting: Seconds spent waiting on its input or output queue.
        items: Items the stage finished.
    """

    busy: float = 0.0
    waiting: float = 0.0
    items: int = 0


@dataclass
class RunResult:
    """Everything a finished run knows.

    Attributes:
        info: The probed input.
        output: The written video, or None when no video was asked for.
        poses: The saved pose cache, or None.
        frames: One FrameResult per decoded frame, in order (a list, or a `FrameTable` on
            disk).
        total: The total score (mean of frame scores), or None.
        total_text: The end card's text ("" with scoring off).
        encoder: The H.264 encoder used, or None without a video.
        decoder: What decoded the video: "ffmpeg" or "nvdec".
        device: The model's device.
        runtime: What ran the model ("torch", "openvino", "onnxruntime"); None for a replay.
        seconds: Wall-clock seconds of the whole run (probe to finished file).
        stages: Per stage: busy and waiting seconds and items.
        model: The pose model's name (the cached model's when replaying a pose cache).
        persons: One entry per tracked person, ids ascending (see `PersonResult`).
        worst_moments: The stretches with the lowest group pose score, worst first.
        sync: The group's synchrony calibrated against chance, per performer and over time,
            or None with scoring off or no performer.
        analysis_seconds: Seconds of the whole-video analysis (inside `seconds`) by part:
            "tracks", "timing", "sync", "reference" (those that ran).
        groups: The groups of performers, largest first (see `workers.analysis.Group`).
        identity: How the ids were made: tracklets, joins, camera cuts.
        input_size: The model's input size for this video and why, or None (a replay, a
            model without one).
        teacher: The teacher this video was compared with (`--reference`), or None.
        reference: The performers against the teacher, or None without a teacher (or with
            scoring off).
    """

    info: VideoInfo
    output: Path | None
    poses: Path | None
    frames: Sequence[FrameResult]
    total: float | None
    total_text: str
    encoder: str | None
    device: str
    seconds: float
    stages: dict[str, StageTime] = field(default_factory=dict)
    decoder: str = "ffmpeg"
    model: str = ""
    runtime: str | None = "torch"
    persons: list[PersonResult] = field(default_factory=list)
    worst_moments: list[Moment] = field(default_factory=list)
    sync: SyncResult | None = None
    analysis_seconds: dict[str, float] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)
    identity: IdentitySummary = IdentitySummary()
    input_size: InputSize | None = None
    teacher: TeacherSetup | None = None
    reference: ReferenceAnalysis | None = None

    @property
    def fps(self) -> float:
        """Input frames processed per wall-clock second."""
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0
