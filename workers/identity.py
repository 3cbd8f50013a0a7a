"""Identity across a video: the tracklets of one person joined under one id.

Pure math on arrays, no I/O. `workers.track.Tracker` cuts a person's track into short, sure
tracklets: wherever the person is hidden for more than a moment, leaves the frame, or a match is
ambiguous (two people cross). `IdentityJoiner` follows the tracklets frame by frame and, when a
tracklet has been seen for `lookahead_s` (or has ended sooner), decides once and for all whether
it continues a person who was last seen at most `max_gap_s` earlier or is a new person. The
decision is an assignment (Hungarian method) between the tracklets not yet decided and the
persons who are absent at their start, on a cost that a report can explain:

    cost = mean of the terms present, each a distance divided by its tolerance:
    - position: where the person was heading and where the tracklet came from, each
      extrapolated at its constant velocity through the gap to its middle (a side too briefly
      seen for a velocity stays where it was seen), in body heights, over a tolerance that
      grows with the gap;
    - velocity: the difference of the two velocities at the gap, body heights per second,
      over a tolerance that grows with the gap;
    - shape: limb lengths over the torso length (upper arm, forearm, thigh, shin; not the
      shoulder or hip width, which shrink when the person turns), the mean absolute difference
      of their logarithms;
    - colour: the median CIELAB colour of the torso, the thighs and the shins, the mean
      distance over the regions both have.

The measurements of each frame come from `workers.appearance`.

A pair is joined when its cost is below `new_person_cost` (a tracklet that matches nobody that
well is a new person) and the assignment gives it; a person is never in two places at once (a
tracklet only continues a person whose last tracklet ended before it started), and no join
crosses a camera cut. Every decision waits at most `lookahead_s`, so a stage that draws the
ids can hold that many frames and then draw each frame once with its final ids.

Shapes and colours are taken only from frames where the person's box is not overlapped by
another's (`max_overlap`), so that an occluder's colours are not learnt as the person's: ten
times a second while a tracklet awaits its decision, then twice a second.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from workers.appearance import (
    COLOUR_REGIONS,
    SHAPE_NAMES,
    body_colours,
    covered_share,
    limb_proportions,
    person_positions,
)
from workers.data import Detections

METHOD = ("conservative tracklets joined over gaps by assignment on position, velocity, "
          "limb proportions and torso/leg colour")

#: Most samples of shape and colour kept per tracklet and per person (older ones thinned).
_MAX_SAMPLES = 64
_FORBIDDEN = 1e9


@dataclass(frozen=True)
class IdentityParams:
    """Knobs of the joining, with units.

    Attributes:
        lookahead_s: How long a new tracklet is watched before its identity is decided,
            seconds. The drawing waits this long (frames held in memory).
        max_gap_s: Longest absence over which a person is recognised again, seconds.
        fit_s: Time at each end of a tracklet over which position and velocity are fitted.
        position_tolerance: Distance of the two extrapolations that costs 1, body heights,
            for a gap of no time.
        position_tolerance_growth: How much that tolerance grows per second of gap.
        velocity_tolerance: Velocity difference that costs 1, body heights per second, for a
            gap of no time.
        velocity_tolerance_growth: How much that tolerance grows per second of gap (a dancer
            turns round within a second: after a long absence the velocity says little).
        shape_tolerance: Mean absolute log difference of the limb proportions that costs 1.
        colour_tolerance: Colour distance that costs 1, CIELAB units.
        new_person_cost: A tracklet joins a person only below this cost.
        max_overlap: Shape and colour are sampled only while at most this share of the box
            is covered by other persons' boxes.
        tracker_margin: The tracker's ambiguity margin (cost units; `workers.track.Tracker`).
        tracker_missing_s: How long the tracker itself bridges a missed detection, seconds
            (held under `lookahead_s`: a decision must see whether the tracker bridged it).
    """

    lookahead_s: float = 1.0
    max_gap_s: float = 3.0
    fit_s: float = 0.5
    position_tolerance: float = 0.35
    position_tolerance_growth: float = 0.6
    velocity_tolerance: float = 1.0
    velocity_tolerance_growth: float = 2.0
    shape_tolerance: float = 0.12
    colour_tolerance: float = 15.0
    new_person_cost: float = 1.0
    max_overlap: float = 0.2
    tracker_margin: float = 0.2
    tracker_missing_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("lookahead_s", "max_gap_s", "fit_s", "position_tolerance", "velocity_tolerance",
                     "shape_tolerance", "colour_tolerance", "new_person_cost"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.tracker_missing_s >= 0:
            raise ValueError(f"tracker_missing_s must be >= 0, got {self.tracker_missing_s!r}")
        if not 0.0 <= self.max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in 0..1, got {self.max_overlap!r}")


# ---- the samples a tracklet or person keeps -------------------------------------------------

class _Samples:
    """At most `2 * _MAX_SAMPLES` vectors, thinned evenly (every other one dropped) when full.

    They live in one float32 array that doubles as it fills, so that a tracklet's memory stays
    a few kilobytes however long the video is.
    """

    def __init__(self) -> None:
        self._buffer: np.ndarray | None = None
        self._count = 0
        self._stride = 1
        self._seen = 0

    @property
    def values(self) -> np.ndarray:
        """The kept samples, oldest first: (n, *shape)."""
        if self._buffer is None:
            return np.empty((0,), np.float32)
        return self._buffer[:self._count]

    def add(self, value: np.ndarray) -> None:
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        if self._buffer is None:
            self._buffer = np.empty((4, *value.shape), np.float32)
        elif self._count == len(self._buffer):
            grown = np.empty((min(2 * len(self._buffer), 2 * _MAX_SAMPLES), *value.shape), np.float32)
            grown[:self._count] = self._buffer
            self._buffer = grown
        self._buffer[self._count] = value
        self._count += 1
        if self._count >= 2 * _MAX_SAMPLES:
            kept = self._buffer[:self._count:2].copy()
            self._count = len(kept)
            self._buffer[:self._count] = kept
            self._stride *= 2

    def extend(self, other: _Samples) -> None:
        for value in other.values:
            self.add(value)

    def summary(self, percentile: float = 50.0) -> np.ndarray | None:
        if not self._count:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(self.values.astype(np.float64), percentile, axis=0)


@dataclass
class _Tracklet:
    id: int
    first: int
    last: int
    frames: int = 0
    person: int | None = None
    join: Join | None = None
    head: list[tuple[int, float, float, float]] = field(default_factory=list)  # first fit frames
    tail: deque = field(default_factory=deque)  # last fit frames: (frame, x, y, height)
    shape: _Samples = field(default_factory=_Samples)
    colour: _Samples = field(default_factory=_Samples)


@dataclass
class _Person:
    id: int
    tracklets: list[_Tracklet]
    shape: _Samples = field(default_factory=_Samples)
    colour: _Samples = field(default_factory=_Samples)

    @property
    def latest(self) -> _Tracklet:
        """The newest tracklet (a person's tracklets never overlap in time)."""
        return self.tracklets[-1]


@dataclass(frozen=True)
class Join:
    """Why a tracklet was taken as the continuation of a person.

    Attributes:
        gap_frames: Frames between the person's last sighting and the tracklet's first.
        cost: The total cost (below `IdentityParams.new_person_cost`).
        terms: Each term's cost ("position", "velocity", "shape", "colour"), those measured.
    """

    gap_frames: int
    cost: float
    terms: dict[str, float]


@dataclass(frozen=True)
class TrackletSpan:
    """One tracklet of a person: its frames and how it was joined (None for the first)."""

    tracklet: int
    first_frame: int
    last_frame: int
    frames: int
    join: Join | None


@dataclass(frozen=True)
class _End:
    """Position, velocity and height at one end of a tracklet (pixels, pixels per frame)."""

    frame: int
    position: np.ndarray
    velocity: np.ndarray | None
    height: float


def _fit(points: Sequence[tuple[int, float, float, float]], at: str) -> _End | None:
    """A line through (frame, x, y) points: its value at the first or last frame, its slope."""
    if not points:
        return None
    data = np.array(points, dtype=np.float64)
    frames, xy, heights = data[:, 0], data[:, 1:3], data[:, 3]
    frame = int(frames[-1] if at == "last" else frames[0])
    height = float(np.median(heights))
    if len(points) < 3 or np.ptp(frames) < 2:
        return _End(frame, xy[-1] if at == "last" else xy[0], None, height)
    centred = frames - frames.mean()
    slope = (centred[:, None] * (xy - xy.mean(axis=0))).sum(axis=0) / (centred**2).sum()
    position = xy.mean(axis=0) + slope * (frame - frames.mean())
    return _End(frame, position, slope, height)


class IdentityJoiner:
    """Joins a video's tracklets into persons, deciding each within `lookahead_s` of its start.

    Call `push` once per frame in order with the frame's persons and their tracklet ids (from
    one `workers.track.Tracker`), then `pop` each frame that `ready` says is decided (oldest
    first), and `close` after the last frame to decide the rest.

    Args:
        fps: Frames per second.
        keypoint_min_score: Keypoints scoring at or below this are unsure (model scale).
        params: Knobs.
    """

    def __init__(self, fps: float, keypoint_min_score: float, params: IdentityParams = IdentityParams()) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.fps = float(fps)
        self.params = params
        self.keypoint_min_score = keypoint_min_score
        self.lookahead = max(1, round(params.lookahead_s * fps))
        self.max_gap = max(1, round(params.max_gap_s * fps))
        self.fit_frames = max(2, round(params.fit_s * fps))
        self.sample_every = max(1, round(fps / 10))  # frames between shape and colour samples while undecided
        self._tracklets: dict[int, _Tracklet] = {}
        self._persons: dict[int, _Person] = {}
        self._pending: deque[np.ndarray] = deque()  # tracklet ids of the frames not popped
        self._frames = 0  # frames pushed
        self._popped = 0
        self._closed = False
        self._cuts: list[int] = []  # frames that start a new scene

    @property
    def tracker_missing(self) -> int:
        """Frames the tracker may bridge (see `IdentityParams.tracker_missing_s`)."""
        return min(self.lookahead - 1, round(self.params.tracker_missing_s * self.fps))

    @property
    def scene_cuts(self) -> list[int]:
        """Frames at which a camera cut was reported (`push(..., cut=True)`)."""
        return list(self._cuts)

    def push(self, persons: Detections, tracklet_ids: np.ndarray, image: np.ndarray | None = None,
             cut: bool = False) -> None:
        """Record the next frame's persons.

        Args:
            persons: The frame's persons.
            tracklet_ids: (n,) their tracklet ids.
            image: The frame (RGB uint8) for the colours; None leaves colour out.
            cut: The frame starts a new scene (a camera cut): nobody is joined across it.
        """
        if self._closed:
            raise ValueError("push after close")
        frame = self._frames
        self._frames += 1
        if cut:
            self._cuts.append(frame)
        ids = np.asarray(tracklet_ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(persons):
            raise ValueError(f"tracklet_ids must have one id per person ({len(persons)}), got {len(ids)}")
        self._pending.append(ids)
        if not len(persons):
            return
        sure = persons.keypoint_scores > self.keypoint_min_score
        centres = person_positions(persons.keypoints, sure, persons.boxes)
        heights = np.maximum(persons.boxes[:, 3] - persons.boxes[:, 1], 1.0)
        # Shape and colour where the person is not partly behind someone: ten times a second while
        # a tracklet waits for its decision, twice a second after it.
        sampled = np.zeros(len(ids), dtype=bool)
        if frame % self.sample_every == 0:
            sampled[:] = frame % (5 * self.sample_every) == 0
            if not sampled.all():
                sampled = np.array([self._tracklets.get(t) is None or self._tracklets[t].person is None
                                    for t in ids.tolist()])
        if sampled.any():
            sampled &= covered_share(persons.boxes) <= self.params.max_overlap
        shapes = np.full((len(ids), len(SHAPE_NAMES)), np.nan)
        colours = None if image is None else np.full((len(ids), len(COLOUR_REGIONS), 3), np.nan)
        if sampled.any():
            shapes[sampled] = limb_proportions(persons.keypoints[sampled], sure[sampled])
            if colours is not None and image is not None:
                colours[sampled] = body_colours(image, persons.keypoints[sampled], sure[sampled])
        for k, tracklet_id in enumerate(ids.tolist()):
            tracklet = self._tracklets.get(tracklet_id)
            if tracklet is None:
                tracklet = self._tracklets[tracklet_id] = _Tracklet(tracklet_id, frame, frame,
                                                                    tail=deque(maxlen=self.fit_frames))
            tracklet.last = frame
            tracklet.frames += 1
            point = (frame, float(centres[k, 0]), float(centres[k, 1]), float(heights[k]))
            if len(tracklet.head) < self.fit_frames:
                tracklet.head.append(point)
            tracklet.tail.append(point)
            if sampled[k]:
                owner = self._persons.get(tracklet.person) if tracklet.person is not None else None
                if np.isfinite(shapes[k]).any():
                    tracklet.shape.add(shapes[k])
                    if owner is not None:
                        owner.shape.add(shapes[k])
                if colours is not None and np.isfinite(colours[k]).any():
                    tracklet.colour.add(colours[k])
                    if owner is not None:
                        owner.colour.add(colours[k])

    def ready(self) -> int:
        """Frames that `pop` can return now."""
        if self._closed:
            return len(self._pending)
        return max(0, self._frames - self.lookahead - self._popped)

    def close(self) -> None:
        """No more frames: every remaining frame becomes ready."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def pop(self) -> np.ndarray:
        """The oldest pending frame's person ids, (n,) int64, in the order of its persons."""
        if not self.ready():
            raise ValueError("no frame is ready")
        frame = self._popped
        ids = self._pending.popleft()
        self._popped += 1
        if any(self._tracklets[t].person is None for t in ids.tolist()):
            self._decide(frame)
        return np.array([self._tracklets[t].person for t in ids.tolist()], dtype=np.int64)

    def persons(self) -> dict[int, list[TrackletSpan]]:
        """{person id: its tracklets in order}, for the persons decided so far."""
        return {
            person.id: [TrackletSpan(t.id, t.first, t.last, t.frames, t.join) for t in person.tracklets]
            for person in self._persons.values()
        }

    @property
    def tracklet_count(self) -> int:
        """Tracklets seen so far."""
        return len(self._tracklets)

    # ---- decisions --------------------------------------------------------------------------

    def _decide(self, frame: int) -> None:
        """Decide every undecided tracklet that starts at or before `frame`, jointly with the
        undecided ones seen after it that overlap it in time (they compete for the same
        persons; one that starts after it ends may be its continuation, and waits its turn)."""
        undecided = []
        reach = frame
        waiting = sorted((t for t in self._tracklets.values() if t.person is None), key=lambda t: (t.first, t.id))
        for tracklet in waiting:
            if tracklet.first > reach:
                break
            undecided.append(tracklet)
            reach = max(reach, tracklet.last)
        persons = list(self._persons.values())
        cost = np.full((len(undecided), len(persons)), _FORBIDDEN)
        terms: dict[tuple[int, int], dict[str, float]] = {}
        for row, tracklet in enumerate(undecided):
            for col, person in enumerate(persons):
                found = self._join_cost(person, tracklet)
                if found is not None:
                    cost[row, col], terms[row, col] = found
        choice: dict[int, int] = {}
        if persons:
            # Each row may also stay new: a column of its own at the new-person cost.
            padded = np.hstack([cost, np.full((len(undecided), len(undecided)), _FORBIDDEN)])
            padded[:, len(persons):][np.diag_indices(len(undecided))] = self.params.new_person_cost
            for row, col in zip(*linear_sum_assignment(padded)):
                if col < len(persons) and cost[row, col] < self.params.new_person_cost:
                    choice[int(row)] = int(col)
        for row, tracklet in enumerate(undecided):
            if tracklet.first > frame:
                continue
            if row in choice:
                person = persons[choice[row]]
                gap = tracklet.first - person.latest.last - 1
                tracklet.join = Join(gap, float(cost[row, choice[row]]), terms[row, choice[row]])
            else:
                person = self._persons[len(self._persons) + 1] = _Person(len(self._persons) + 1, [])
            tracklet.person = person.id
            person.tracklets.append(tracklet)
            person.shape.extend(tracklet.shape)
            person.colour.extend(tracklet.colour)

    def _recent(self, person: _Person) -> list[tuple[int, float, float, float]]:
        """The person's sightings of the last `fit_frames` frames before its last one, across
        its tracklets (its newest tracklet may be a single frame where two people crossed)."""
        last = person.latest.last
        points: list[tuple[int, float, float, float]] = []
        for tracklet in reversed(person.tracklets):
            if tracklet.last <= last - self.fit_frames:
                break
            points = [point for point in tracklet.tail if point[0] > last - self.fit_frames] + points
        return points

    def _join_cost(self, person: _Person, tracklet: _Tracklet) -> tuple[float, dict[str, float]] | None:
        """The cost of `tracklet` continuing `person`, with its terms; None where not allowed."""
        last = person.latest.last
        if last >= tracklet.first or tracklet.first - last > self.max_gap:
            return None
        if any(last < cut <= tracklet.first for cut in self._cuts):
            return None
        params = self.params
        before = _fit(self._recent(person), "last")
        after = _fit(tracklet.head, "first")
        terms: dict[str, float] = {}
        if before is not None and after is not None:
            gap = tracklet.first - last
            height = (before.height + after.height) / 2
            # Each side moves at its constant velocity through the gap, both halfway when both
            # are known; a side seen too briefly for a velocity stays where it was seen.
            share = 0.5 if before.velocity is not None and after.velocity is not None else 1.0
            heading = before.position + (0.0 if before.velocity is None else before.velocity * gap * share)
            coming = after.position - (0.0 if after.velocity is None else after.velocity * gap * share)
            if before.velocity is not None and after.velocity is not None:
                change = np.linalg.norm(before.velocity - after.velocity) * self.fps / height
                allowed = params.velocity_tolerance + params.velocity_tolerance_growth * gap / self.fps
                terms["velocity"] = float(change / allowed)
            tolerance = params.position_tolerance + params.position_tolerance_growth * gap / self.fps
            terms["position"] = float(np.linalg.norm(heading - coming) / height / tolerance)
        shape_a, shape_b = person.shape.summary(75.0), tracklet.shape.summary(75.0)
        if shape_a is not None and shape_b is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                logs = np.abs(np.log(shape_a) - np.log(shape_b))
            logs = logs[np.isfinite(logs)]
            if logs.size >= 2:
                terms["shape"] = float(logs.mean() / params.shape_tolerance)
        colour_a, colour_b = person.colour.summary(), tracklet.colour.summary()
        if colour_a is not None and colour_b is not None:
            distances = np.linalg.norm(colour_a - colour_b, axis=1)
            distances = distances[np.isfinite(distances)]
            if distances.size:
                terms["colour"] = float(distances.mean() / params.colour_tolerance)
        if "position" in terms and terms["position"] > 3.0:
            return None  # too far to be the same person, whatever the looks
        if not terms:
            return None
        return float(np.mean(list(terms.values()))), terms
