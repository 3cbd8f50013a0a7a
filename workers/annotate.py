"""The score + draw stage's work on one frame at a time, and the end of the video.

No threads: `pipeline.runner` feeds an `Annotator` from its queue, the tests feed it plain
frames and persons.
"""

from __future__ import annotations

from pathlib import Path

from config import Config
from workers.analysis import PersonResult, VideoAnalysis, analyse_video
from workers.data import CHUNK_FRAMES, Detections, Frame
from workers.draw import draw_label, draw_person_labels, draw_skeletons
from workers.poses import PoseLog
from workers.records import FrameResult, FrameTable
from workers.score import RunningScore, ScoreParams, frame_score, persons_above
from workers.sync import SyncParams, SyncResult
from workers.timing import Moment, TimingParams, current_lags
from workers.track import Tracker, TrackSummarizer, select_performers


def score_params(config: Config) -> ScoreParams:
    """The score constants a config asks for."""
    return ScoreParams(
        person_threshold=config.person_threshold_in_effect,
        distance_offset=config.distance_offset,
        distance_scale=config.distance_scale,
        score_max=config.score_max,
        display_window=config.display_window,
        keypoint_weighting=config.weighting,
    )


def timing_params(config: Config) -> TimingParams:
    """The timing-analysis knobs a config asks for (the score constants included)."""
    return TimingParams(mirror=config.mirror, score=score_params(config))


class Annotator:
    """Tracks, scores and draws frames in order (the score + draw stage without threads).

    Each person gets a track id (colour and "#id" label follow it). With scoring on and
    `fps` given, every `hop_s` the trailing `window_s` of tracked poses is analysed and each
    analysed person's label shows its current lag ("#2 +120 ms") until the next update. After
    the last frame, `finish` analyses the whole video (`workers.analysis.analyse_video`).

    Args:
        config: The run's settings.
        draw: Draw on the frames; False only scores them (no video is made).
        fps: Frames per second of the video; None turns the live lag off (and `finish`
            then needs it).
        directory: Where the per-frame records live on disk (temporary files that no one
            sees); None for the system's temporary folder.
    """

    #: Frames read at a time by the whole-video analysis.
    CHUNK_FRAMES = CHUNK_FRAMES

    def __init__(self, config: Config, draw: bool = True, fps: float | None = None,
                 directory: Path | None = None) -> None:
        self.config = config
        self.draw = draw
        self.fps = None if fps is None else float(fps)
        self.params = score_params(config)
        self.timing = timing_params(config)
        self.running = RunningScore(self.params)
        self.results = FrameTable(directory)
        # One tracker per Annotator, and one Annotator per video: ids never carry over.
        self.tracker = Tracker(max_missing=max(1, round(self.fps)) if self.fps else 30)
        self.tracked = PoseLog(directory)  # every frame's persons and ids, on disk
        self.live_lags: dict[int, float | None] = {}
        self.sync_params = SyncParams(timing=self.timing)
        self._analysis: VideoAnalysis | None = None

    def __call__(self, frame: Frame, detections: Detections) -> None:
        """Track and score `frame`, draw on its image in place, and record the result."""
        persons = persons_above(detections, self.params.person_threshold)
        found_ids = self.tracker.update(persons)
        self.tracked.append(persons, found_ids)
        ids = tuple(int(person_id) for person_id in found_ids)
        score = text = displayed = None
        if self.config.score:
            score = frame_score(persons, self.params)
            text = self.running.update(len(persons), score)
            displayed = self.running.displayed if len(persons) else None
            self._update_live_lags()
        labels = tuple(self._label(person_id) for person_id in ids)
        if self.draw:
            draw_skeletons(frame.image, persons, self.config.keypoint_min_score, ids)
            draw_person_labels(frame.image, persons, ids, labels)
            if text:
                draw_label(frame.image, text)
        result = FrameResult(frame.index, frame.timestamp, len(persons), score, displayed, text, ids, labels)
        self.results.append(result)

    def _label(self, person_id: int) -> str:
        lag = self.live_lags.get(person_id)
        return f"#{person_id}" if lag is None else f"#{person_id} {lag:+.0f} ms"

    def _update_live_lags(self) -> None:
        """Every hop, once a whole window has been seen: the lags over the trailing window."""
        if self.fps is None:
            return
        length = max(1, round(self.timing.window_s * self.fps))
        hop = max(1, round(self.timing.hop_s * self.fps))
        seen = len(self.tracked)
        if seen < length or (seen - length) % hop:
            return
        rows = self.tracked.rows(seen - length, seen)
        summarizer = TrackSummarizer(self.fps)
        summarizer.add(rows)
        selection = select_performers(summarizer.summaries(), self.config.persons)
        scored = {person_id for person_id, (chosen, _) in selection.items() if chosen}
        self.live_lags = current_lags(rows.poses(self.config.keypoint_min_score, only=scored), self.fps, self.timing)

    def finish(self) -> tuple[list[PersonResult], list[Moment]]:
        """The whole-video analysis: every track, the performers' timing and synchrony, the
        worst moments. Done once: later calls return the same.

        Returns:
            One `PersonResult` per track (ids ascending), and the worst moments (empty with
            scoring off or fewer than two performers with comparable poses). The group's
            synchrony is in `sync`, the seconds by part in `analysis_seconds`.
        """
        analysis = self.analysis()
        return analysis.persons, analysis.worst_moments

    def analysis(self) -> VideoAnalysis:
        """`finish`'s whole result (done once)."""
        if self.fps is None:
            raise ValueError("finish needs the video's fps: give it to Annotator(fps=...)")
        if self._analysis is None:
            self._analysis = analyse_video(
                self.tracked, self.fps, score=self.config.score, persons=self.config.persons,
                keypoint_min_score=self.config.keypoint_min_score, timing=self.timing, sync=self.sync_params,
                chunk_frames=self.CHUNK_FRAMES,
            )
        return self._analysis

    @property
    def sync(self) -> SyncResult | None:
        """The performers' synchrony once `finish` has run, else None."""
        return None if self._analysis is None else self._analysis.sync

    @property
    def analysis_seconds(self) -> dict[str, float]:
        """Seconds the whole-video analysis spent on each part ("tracks", "timing", "sync")."""
        return {} if self._analysis is None else dict(self._analysis.seconds)

    def end_card_text(self) -> str:
        """The original's total score text ("" with scoring off)."""
        return self.running.total_text() if self.config.score else ""

    def end_card_lines(self) -> list[str]:
        """The end card: the original's total score, then the group's synchrony once analysed."""
        if not self.config.score:
            return []
        lines = [self.running.total_text()]
        if self.sync is not None and self.sync.group is not None:
            group = self.sync.group
            lines.append(f"Group sync: {group.score:.1f} (chance {group.chance_mean:.1f})")
        return lines
