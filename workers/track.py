"""Tracklets and performer selection: short, sure pieces of one person's track; who performs.

Pure math, no I/O. `Tracker` gives every detection of a frame the id of the tracklet it
continues, matching consecutive frames by box overlap and keypoint distance with a constant-
velocity prediction. It is conservative: where a match is ambiguous (another person's
detection, or another tracklet, is nearly as good a match) the tracklet ends and a new one
starts, so that a tracklet never changes person; `workers.identity` joins the tracklets of one
person over the whole video. The per-frame ids become one pose sequence per id
(`workers.data.PoseRows.poses`) and, a chunk of frames at a time, one summary per id
(`TrackSummarizer`); `select_performers` decides from the summaries whom to score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from workers.data import Detections, PoseRows
from workers.skeleton import NUM_KEYPOINTS

# A cost no allowed pair reaches: linear_sum_assignment needs finite entries.
_FORBIDDEN = 1e9


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `boxes_a` with every box in `boxes_b`.

    Args:
        boxes_a: (n, 4) boxes x1, y1, x2, y2 in pixels.
        boxes_b: (m, 4) boxes in pixels.

    Returns:
        (n, m) IoU in 0..1 (0 where a union is empty).
    """
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


@dataclass
class _Track:
    id: int
    box: np.ndarray  # (4,) pixels, as last seen
    keypoints: np.ndarray  # (17, 2) pixels, as last seen
    velocity: np.ndarray  # (2,) pixels per frame of the keypoint centre
    last_frame: int
    observations: int


class Tracker:
    """Gives each person a stable integer id across the frames of one video.

    Create one per video and call `update` once per frame, in order. Each frame, the live
    tracks (seen within the last `max_missing` frames) are matched to the detections by the
    Hungarian method on

        cost = iou_weight * (1 - IoU) + (1 - iou_weight) * d / max_distance,

    where d is the mean keypoint distance in units of the track's box size (the longer box
    side, in pixels), each keypoint's distance clipped at 1. Each track is compared both
    where it was last seen and where its constant velocity predicts it now, and the cheaper
    counts. A pair is allowed only when
    d <= max_distance + distance_growth * (frames missing), so a person hidden longer may
    reappear further away. A matched pair is refused as ambiguous when another detection is
    within `ambiguity_margin` of the track's cost, or another track within it of the
    detection's: the track ends there (it is never continued) and the detection starts a new
    one. Unmatched detections start new ids (1, 2, 3, ... in the order of the detections); an
    id is never given again. The result does not depend on the order of the detections except
    for exact ties.

    Args:
        max_missing: Frames a person may be absent and still keep the id (about 1 s).
        iou_weight: Weight of the box overlap in the cost, 0..1; the rest is keypoints.
        max_distance: Largest mean keypoint distance for a match between consecutive
            frames, in box sizes.
        distance_growth: How much `max_distance` grows per missing frame, in box sizes.
        velocity_smoothing: Weight of the newest velocity in its running average, (0, 1].
        ambiguity_margin: How much cheaper than every alternative a match must be, in cost
            units; None never ends a track for ambiguity.
    """

    def __init__(
        self,
        max_missing: int = 30,
        iou_weight: float = 0.5,
        max_distance: float = 0.5,
        distance_growth: float = 0.02,
        velocity_smoothing: float = 0.5,
        ambiguity_margin: float | None = None,
    ) -> None:
        if not (isinstance(max_missing, (int, np.integer)) and max_missing >= 0):
            raise ValueError(f"max_missing must be an integer >= 0 frames, got {max_missing!r}")
        if not 0.0 <= iou_weight <= 1.0:
            raise ValueError(f"iou_weight must be in 0..1, got {iou_weight!r}")
        if not max_distance > 0:
            raise ValueError(f"max_distance must be > 0 box sizes, got {max_distance!r}")
        if not distance_growth >= 0:
            raise ValueError(f"distance_growth must be >= 0 box sizes per frame, got {distance_growth!r}")
        if not 0.0 < velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {velocity_smoothing!r}")
        if ambiguity_margin is not None and not ambiguity_margin >= 0:
            raise ValueError(f"ambiguity_margin must be >= 0 cost units or None, got {ambiguity_margin!r}")
        self.max_missing = int(max_missing)
        self.iou_weight = float(iou_weight)
        self.max_distance = float(max_distance)
        self.distance_growth = float(distance_growth)
        self.velocity_smoothing = float(velocity_smoothing)
        self.ambiguity_margin = ambiguity_margin
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1

    def update(self, persons: Detections) -> np.ndarray:
        """Match one frame's persons to the tracks.

        Args:
            persons: The frame's detections (any order, possibly none).

        Returns:
            (n,) int64 ids, one per detection in the given order.
        """
        frame = self._frame
        self._frame += 1
        self._tracks = [t for t in self._tracks if frame - t.last_frame - 1 <= self.max_missing]
        ids = np.zeros(len(persons), dtype=np.int64)
        matched: set[int] = set()
        ended: set[int] = set()
        if self._tracks and len(persons):
            cost = self._cost(persons, frame)
            for row, col in zip(*linear_sum_assignment(cost)):
                if cost[row, col] >= _FORBIDDEN:
                    continue
                if self._ambiguous(cost, row, col):
                    ended.add(int(row))
                    continue
                self._follow(self._tracks[row], persons, col, frame)
                ids[col] = self._tracks[row].id
                matched.add(int(col))
        self._tracks = [track for row, track in enumerate(self._tracks) if row not in ended]
        for col in range(len(persons)):
            if col not in matched:
                ids[col] = self._start(persons, col, frame)
        return ids

    def reset(self) -> None:
        """End every track (a camera cut): the next frame's persons all start new ids."""
        self._tracks = []

    def _ambiguous(self, cost: np.ndarray, row: int, col: int) -> bool:
        """Whether another detection for this track, or another track for this detection,
        comes within `ambiguity_margin` of the pair's cost."""
        if self.ambiguity_margin is None:
            return False
        limit = cost[row, col] + self.ambiguity_margin
        row_values, col_values = cost[row], cost[:, col]
        return bool((row_values < limit).sum() > 1 or (col_values < limit).sum() > 1)

    def _cost(self, persons: Detections, frame: int) -> np.ndarray:
        """(tracks, detections) matching cost, `_FORBIDDEN` where the gate refuses the pair."""
        gaps = np.array([frame - t.last_frame for t in self._tracks], dtype=np.float64)
        boxes = np.stack([t.box for t in self._tracks])
        keypoints = np.stack([t.keypoints for t in self._tracks])
        shifts = np.stack([t.velocity for t in self._tracks]) * gaps[:, None]
        sides = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0).max(axis=1)
        gate = self.max_distance + self.distance_growth * (gaps - 1)
        best = np.full((len(self._tracks), len(persons)), _FORBIDDEN)
        for shift in (np.zeros_like(shifts), shifts):
            moved_boxes = boxes + np.tile(shift, 2)
            moved_keypoints = keypoints + shift[:, None, :]
            gaps_px = np.linalg.norm(moved_keypoints[:, None] - persons.keypoints[None], axis=-1)
            # Clipped at one box size so that one wild keypoint cannot outweigh the rest.
            distance = np.minimum(gaps_px / sides[:, None, None], 1.0).mean(axis=-1)
            iou = box_iou(moved_boxes, persons.boxes)
            cost = self.iou_weight * (1 - iou) + (1 - self.iou_weight) * distance / self.max_distance
            cost = np.where(distance <= gate[:, None], cost, _FORBIDDEN)
            best = np.minimum(best, cost)
        return best

    def _follow(self, track: _Track, persons: Detections, col: int, frame: int) -> None:
        keypoints = persons.keypoints[col]
        step = (keypoints.mean(axis=0) - track.keypoints.mean(axis=0)) / (frame - track.last_frame)
        if track.observations == 1:
            track.velocity = step
        else:
            a = self.velocity_smoothing
            track.velocity = a * step + (1 - a) * track.velocity
        track.box = persons.boxes[col].copy()
        track.keypoints = keypoints.copy()
        track.last_frame = frame
        track.observations += 1

    def _start(self, persons: Detections, col: int, frame: int) -> int:
        track = _Track(
            id=self._next_id,
            box=persons.boxes[col].copy(),
            keypoints=persons.keypoints[col].copy(),
            velocity=np.zeros(2),
            last_frame=frame,
            observations=1,
        )
        self._next_id += 1
        self._tracks.append(track)
        return track.id


@dataclass(frozen=True)
class TrackSummary:
    """What performer selection needs to know about one id over the whole video.

    Attributes:
        frames_present: Frames in which the id was detected.
        total_frames: Frames in the video.
        median_height: Median box height over the frames present, in pixels.
        motion: Median over time of the mean keypoint displacement over `interval_s`,
            in box heights per second (NaN when the track is too short to measure).
        first_frame: Index of the first frame in which the id was detected.
        last_frame: Index of the last such frame.
        box: The median box over the frames present, (x0, y0, x1, y1) in pixels, each
            coordinate's median on its own; None when unknown.
    """

    frames_present: int
    total_frames: int
    median_height: float
    motion: float
    first_frame: int = 0
    last_frame: int = 0
    box: tuple[float, float, float, float] | None = None

    @property
    def presence(self) -> float:
        """Fraction of the video's frames in which the id was detected, 0..1."""
        return self.frames_present / self.total_frames if self.total_frames else 0.0


class TrackSummarizer:
    """`TrackSummary`s of a video fed a chunk of frames at a time.

    Motion is measured as displacement over `interval_s` rather than frame to frame so that
    a pose model's frame-to-frame jitter does not make a person standing still look moving.

    Motion pairs each frame with the one `margin` frames earlier, so each chunk after the first
    must come with the `margin` frames before it: `add(rows, own_from=first frame of the chunk)`.
    Chunks must come in frame order.

    Args:
        fps: Frames per second.
        interval_s: Time over which displacement is measured, in seconds.
        min_gap_s: Shortest absence `gaps` lists, in seconds (at least 2 frames): the
            model's one-frame misses are not gaps a reader wants to see.
    """

    def __init__(self, fps: float, interval_s: float = 0.5, min_gap_s: float = 0.1) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.fps = float(fps)
        self.margin = max(1, round(interval_s * fps))
        self.min_gap = max(2, round(min_gap_s * fps))
        self._frames = 0
        self._heights: dict[int, list[np.ndarray]] = {}
        self._boxes: dict[int, list[np.ndarray]] = {}
        self._motions: dict[int, list[np.ndarray]] = {}
        self._spans: dict[int, list[int]] = {}  # id: [first frame, last frame]
        self._gaps: dict[int, list[tuple[int, int]]] = {}  # id: absences (first, last frame)

    def add(self, rows: PoseRows, own_from: int | None = None) -> None:
        """Count frames `own_from`.. of `rows` (default: all); earlier ones only pair with them."""
        own_from = rows.start if own_from is None else own_from
        step = self.margin
        frame = rows.frame_of_record
        own = frame >= own_from
        person_ids = rows.records["ids"]
        heights = rows.records["boxes"][:, 3].astype(np.float64) - rows.records["boxes"][:, 1]
        self._frames += max(0, rows.start + len(rows) - own_from)
        for person_id in np.unique(person_ids[own]).tolist():
            mine = own & (person_ids == person_id)
            self._heights.setdefault(person_id, []).append(heights[mine])
            self._boxes.setdefault(person_id, []).append(rows.records["boxes"][mine])
            seen = np.unique(frame[mine])
            span = self._spans.get(person_id)
            if span is not None:
                seen = np.concatenate([[span[1]], seen])
            else:
                span = self._spans[person_id] = [int(seen[0]), 0]
            jumps = np.flatnonzero(np.diff(seen) > self.min_gap)
            if jumps.size:
                self._gaps.setdefault(person_id, []).extend(
                    (int(seen[k]) + 1, int(seen[k + 1]) - 1) for k in jumps.tolist())
            span[1] = int(seen[-1])
        keypoints = rows.records["keypoints"].astype(np.float64)
        for person_id in np.unique(person_ids).tolist():
            # Each id over its own span of these frames only: a crowd's passers-by are each
            # seen for a few seconds, so this holds far fewer frames than the whole chunk.
            mine = np.flatnonzero(person_ids == person_id)
            first = int(frame[mine].min())
            length = int(frame[mine].max()) - first + 1
            if length <= step:
                continue
            series = np.full((length, NUM_KEYPOINTS, 2), np.nan)
            series[frame[mine] - first] = keypoints[mine]
            height = np.full(length, np.nan)
            height[frame[mine] - first] = heights[mine]
            moved = np.linalg.norm(series[step:] - series[:-step], axis=-1)  # (length-step, 17)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_height = moved.mean(axis=1) / height[:-step] * self.fps / step
            later = np.arange(first + step, first + length)
            per_height = per_height[(later >= own_from) & np.isfinite(per_height)]
            if per_height.size:
                self._motions.setdefault(person_id, []).append(per_height)

    def gaps(self) -> dict[int, list[tuple[int, int]]]:
        """{id: [(first, last frame) of each absence of at least `min_gap` frames]} between the
        id's first and last frame, in order; ids without such an absence are left out."""
        return {person_id: list(gaps) for person_id, gaps in sorted(self._gaps.items())}

    def summaries(self) -> dict[int, TrackSummary]:
        """{id: TrackSummary} of every id seen in the frames counted, ids ascending."""
        result = {}
        for person_id in sorted(self._heights):
            heights = np.concatenate(self._heights[person_id])
            motion = np.concatenate(self._motions.get(person_id, [np.empty(0)]))
            box = np.median(np.concatenate(self._boxes[person_id]).astype(np.float64), axis=0)
            result[person_id] = TrackSummary(
                frames_present=len(heights),
                total_frames=self._frames,
                median_height=float(np.median(heights)),
                motion=float(np.median(motion)) if motion.size else float("nan"),
                first_frame=self._spans[person_id][0],
                last_frame=self._spans[person_id][1],
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            )
        return result


def select_performers(
    tracks: Mapping[int, TrackSummary],
    mode: str | int = "auto",
    min_presence: float = 0.5,
    min_relative_height: float = 0.5,
    min_relative_motion: float = 0.25,
) -> dict[int, tuple[bool, str]]:
    """Decide whom to score: the main group, not bystanders or passers-by.

    "auto" keeps an id when all three hold, in this order:
    1. it is present in at least `min_presence` of the frames;
    2. its median height is at least `min_relative_height` times the median height of the
       ids passing 1 (of all ids when none passes), so the far-away audience drops out;
    3. its motion is at least `min_relative_motion` times the median motion of the ids
       passing 1 and 2, so people standing still drop out (relative, so a calm dance is
       not mistaken for standing still).
    "all" keeps every id. An integer N keeps N ids: those "auto" keeps first, then the
    most prominent (frames present times median height), then the tallest, then the lowest id.

    Args:
        tracks: {id: TrackSummary}.
        mode: "auto", "all", or a number of persons >= 1.
        min_presence: Fraction of frames, 0..1.
        min_relative_height: Fraction of the group's median height, >= 0.
        min_relative_motion: Fraction of the group's median motion, >= 0.

    Returns:
        {id: (scored, reason)}, ids ascending; the reason says why, e.g.
        "present in 12% of frames; static (motion 0.03 of the group's median)".
    """
    if not (mode in ("auto", "all") or (isinstance(mode, (int, np.integer)) and not isinstance(mode, bool)
                                         and mode >= 1)):
        raise ValueError(f"mode must be 'auto', 'all' or a number of persons >= 1, got {mode!r}")
    if not 0.0 <= min_presence <= 1.0:
        raise ValueError(f"min_presence must be in 0..1, got {min_presence!r}")
    ids = sorted(tracks)
    if mode == "all":
        return {person_id: (True, "all persons scored") for person_id in ids}

    present = [i for i in ids if tracks[i].presence >= min_presence]
    group = present or ids
    group_height = float(np.median([tracks[i].median_height for i in group])) if group else 0.0
    tall = [i for i in group if tracks[i].median_height >= min_relative_height * group_height]
    motions = [tracks[i].motion for i in tall if np.isfinite(tracks[i].motion)]
    group_motion = float(np.median(motions)) if motions else 0.0

    verdicts: dict[int, tuple[bool, str]] = {}
    for person_id in ids:
        track = tracks[person_id]
        problems = []
        if track.presence < min_presence:
            problems.append(f"present in {track.presence:.0%} of frames")
        relative_height = track.median_height / group_height if group_height > 0 else 1.0
        if relative_height < min_relative_height:
            problems.append(f"smaller than {min_relative_height:g} of the group's median height "
                            f"({relative_height:.2f})")
        if not np.isfinite(track.motion):
            problems.append("too briefly seen to measure motion")
        elif group_motion > 0 and track.motion < min_relative_motion * group_motion:
            problems.append(f"static (motion {track.motion / group_motion:.2f} of the group's median)")
        if problems:
            verdicts[person_id] = (False, "; ".join(problems))
        else:
            verdicts[person_id] = (True, f"performer: present in {track.presence:.0%} of frames, "
                                         f"height {relative_height:.2f} of the group's median, moving")
    if mode == "auto":
        return verdicts

    # Prominence: screen time times size, so a dancer missed in a few frames still outranks
    # a smaller person who stands in view all along.
    ranked = sorted(ids, key=lambda i: (not verdicts[i][0], -tracks[i].frames_present * tracks[i].median_height,
                                        -tracks[i].median_height, i))
    chosen = set(ranked[:int(mode)])
    return {
        person_id: (True, f"among the {mode} chosen ({verdicts[person_id][1]})")
        if person_id in chosen
        else (False, f"not among the {mode} chosen ({verdicts[person_id][1]})")
        for person_id in ids
    }
