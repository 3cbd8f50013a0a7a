"""The whole-video analysis: from every frame's tracked persons to each person's results.

Runs once, after the last frame: the track summaries, who the performers are and in which
groups, their timing (`workers.timing`), their synchrony against chance (`workers.sync`) and
the worst moments. It reads the recorded frames a chunk at a time, so its memory does not grow
with the video. No threads; the score stage calls it (`workers.annotate.Annotator.finish`).

Who performs (`--persons auto`): the people present for at least half of the video, at least
half as tall as the others and moving (`select_performers`: not the audience far away, not
bystanders standing still) are compared pair by pair (`workers.sync.pairwise_sync`); two of them
*move together* when their movement's likeness, at the best lag within the lag search, is above
chance. The groups are the connected sets of people who move together (two lines doing
different choreography are two groups; so are the two halves of a canon more than the lag
search apart), and the performers are their members. Each group's lags are measured against
its own members. When nobody moves together above chance, those compared are analysed as one
group, so that unrelated movers still get their (chance-level) scores.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from workers.data import CHUNK_FRAMES
from workers.identity import IdentityJoiner, TrackletSpan
from workers.limbs import LimbParams, LimbTiming, limb_lags_in_group
from workers.moments import Moment, worst_moments
from workers.motion import PoseSource
from workers.poses import PoseLog
from workers.reference import ReferenceAnalysis, TeacherSetup, analyse_against_teacher
from workers.score import ScoreParams, distance_to_score
from workers.sync import PairSync, PairwiseSync, SyncParams, SyncResult, SyncScore, pairwise_sync
from workers.timing import PersonTiming, TimingParams, WindowLag, analyse_timing_stream
from workers.track import TrackSummarizer, TrackSummary, select_performers

#: Seconds left out of the analysis on each side of a person's absence (`unsure_edges`).
EDGE_S = 0.2


@dataclass(frozen=True)
class PersonResult:
    """One tracked person over the whole video, and the timing analysis of the performers.

    Attributes:
        id: Track id, from 1.
        frames: Frames in which the person was found.
        first_frame: Index of the first such frame.
        last_frame: Index of the last such frame.
        scored: Whether the person is a performer (taken into the timing analysis).
        reason: Why the person was or was not scored.
        lag_ms: Median lag behind the group over the windows, milliseconds (negative:
            ahead), or None (not scored, or no window gave a clear lag).
        lag_confidence: How clear the lag is, 0..1 (`workers.timing.lag_confidence`: 0 when
            no window gave one), or None when not scored.
        windows: The per-window lags (empty when not scored).
        score: Pose similarity to the other performers after removing the lags, 0..10, or None.
        timing_score: 0..10 from `lag_ms`, or None.
        mirrored_with: Ids of the performers compared with this one as mirror images.
        box: The median box over the frames the person was found in, (x0, y0, x1, y1)
            pixels, so that a reader can tell who is who; None when unknown.
        sync: Synchrony with the other performers of its group, calibrated against chance
            (`workers.sync`), or None (not scored, or nothing to compare).
        group: The number of the person's group (1 = the largest), or None.
        tracklets: The tracklets joined into this person (`workers.identity`), in order;
            empty when unknown.
        gaps: (first frame, last frame) of each absence of at least 0.1 s between the
            person's first and last frame (`TrackSummarizer.gaps`).
        limbs: Each limb's lag behind the group's same limb (`workers.limbs`); empty when not
            scored or alone in the group.
        late_limbs: The limbs late against the rest of the person's body, by name.
    """

    id: int
    frames: int
    first_frame: int
    last_frame: int
    scored: bool
    reason: str
    lag_ms: float | None = None
    windows: tuple[WindowLag, ...] = ()
    score: float | None = None
    timing_score: float | None = None
    mirrored_with: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    sync: SyncScore | None = None
    lag_confidence: float | None = None
    group: int | None = None
    tracklets: tuple[TrackletSpan, ...] = ()
    gaps: tuple[tuple[int, int], ...] = ()
    limbs: tuple[LimbTiming, ...] = ()
    late_limbs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """People analysed together: their lags are against each other.

    Attributes:
        number: 1 for the largest group, then by size (ties: the lowest id first).
        members: Their ids, ascending.
        reason: Why they are a group: "moves together above chance", "nobody moves together
            above chance: the people present, tall enough and moving", or "chosen with
            --persons".
        moves_together: Whether the group comes from movement above chance.
        sync: The group's synchrony over its own pairs, or None.
    """

    number: int
    members: tuple[int, ...]
    reason: str
    moves_together: bool
    sync: SyncScore | None = None


@dataclass(frozen=True)
class IdentitySummary:
    """How the identities were made.

    Attributes:
        tracklets: Tracklets the tracker produced.
        joins: Tracklets joined to an earlier person.
        scene_cuts: Frames at which a camera cut was detected; nobody's id is carried across.
        lookahead_s: How long a new tracklet was watched before its identity was decided.
    """

    tracklets: int = 0
    joins: int = 0
    scene_cuts: tuple[int, ...] = ()
    lookahead_s: float = 0.0


@dataclass(frozen=True)
class VideoAnalysis:
    """What the whole-video analysis found.

    Attributes:
        persons: One `PersonResult` per track, ids ascending.
        worst_moments: The stretches with the lowest group pose score, worst first (empty
            with scoring off or fewer than two performers with comparable poses).
        sync: The performers' synchrony (and every compared pair's), or None with scoring
            off or no one to compare.
        seconds: Seconds spent on each part: "tracks", "timing", "limbs", "sync", "reference" (those
            that ran).
        groups: The groups analysed, largest first.
        identity: How the ids were made.
        reference: The performers against the teacher (`--reference`), or None without one.
    """

    persons: list[PersonResult] = field(default_factory=list)
    worst_moments: list[Moment] = field(default_factory=list)
    sync: SyncResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)
    identity: IdentitySummary = IdentitySummary()
    reference: ReferenceAnalysis | None = None


def analyse_video(
    tracked: PoseLog,
    fps: float,
    *,
    score: bool,
    persons: str | int,
    keypoint_min_score: float,
    timing: TimingParams,
    sync: SyncParams,
    chunk_frames: int = CHUNK_FRAMES,
    identity: IdentityJoiner | None = None,
    teacher: TeacherSetup | None = None,
) -> VideoAnalysis:
    """Every track's summary, the groups, the performers' timing and synchrony, the worst moments.

    Args:
        tracked: Every frame's persons with their ids, in order.
        fps: Frames per second of the video.
        score: Whether scoring is on; off, nobody is a performer and only tracks come out.
        persons: Whom to analyse: "auto" (who moves together, see the module's docstring),
            "all" or a count (see `select_performers`).
        keypoint_min_score: Keypoints at or below this score count as absent.
        timing: The timing analysis's knobs (the score constants included).
        sync: The synchrony score's knobs.
        chunk_frames: Frames read at a time.
        identity: The joiner that made the ids, for each person's tracklets; None if unknown.
        teacher: The teacher to compare the performers with (`workers.reference`), or None.

    Returns:
        The persons, worst moments, synchrony, groups, the comparison with the teacher and
        the seconds each part took.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    summarizer = _summarise_tracks(tracked, fps, chunk_frames)
    tracks = summarizer.summaries()
    gaps = summarizer.gaps()
    spans = identity.persons() if identity is not None else {}
    summary = _identity_summary(identity, spans)
    seconds["tracks"] = time.perf_counter() - started
    if not tracks:
        nobody = None if teacher is None else ReferenceAnalysis(
            teacher.alignment, None, "nobody was found in this video", why_not_audio=teacher.why_not_audio)
        return VideoAnalysis(seconds=seconds, identity=summary, reference=nobody)

    unsure = unsure_edges(tracks, gaps, len(tracked), max(1, round(EDGE_S * fps)))

    def read_of(ids: Sequence[int]) -> PoseSource:
        return _pose_source(tracked, ids, keypoint_min_score, unsure)

    def mirrored_among(ids: Sequence[int]) -> set[tuple[int, int]]:
        if not timing.mirror or len(ids) < 2:
            return set()
        found = analyse_timing_stream(ids, len(tracked), read_of(ids), fps, timing, chunk_frames=chunk_frames)
        return {(person_id, other) for person_id, result in found.items() for other in result.mirrored_with}

    pairwise: PairwiseSync | None = None
    groups: list[Group] = []
    started = time.perf_counter()
    if not score:
        selection = {person_id: (False, "scoring off (--no-score)") for person_id in tracks}
    elif persons == "auto":
        candidates = [i for i, (kept, _) in select_performers(tracks, "auto").items() if kept]
        if len(candidates) >= 2:
            pairwise = pairwise_sync(candidates, len(tracked), read_of(candidates), fps, None,
                                     mirrored_among(candidates), sync, chunk_frames=chunk_frames)
        selection, groups = choose_groups(tracks, [] if pairwise is None else pairwise.pairs())
    else:
        selection = select_performers(tracks, persons)
        chosen = tuple(i for i, (scored, _) in selection.items() if scored)
        groups = [Group(1, chosen, f"chosen with --persons {persons}", False)] if chosen else []
    performers = sorted(i for group in groups for i in group.members)
    if pairwise is None and performers:
        pairwise = pairwise_sync(performers, len(tracked), read_of(performers), fps, None,
                                 mirrored_among(performers), sync, chunk_frames=chunk_frames)
    group_sync = None
    if pairwise is not None:
        group_sync = pairwise.result([group.members for group in groups])
        groups = [Group(g.number, g.members, g.reason, g.moves_together, pairwise.result([g.members]).group)
                  for g in groups]
    timings: dict[int, PersonTiming] = {}
    limbs: dict[int, tuple[LimbTiming, ...]] = {}
    if score:
        seconds["sync"] = time.perf_counter() - started
        started = time.perf_counter()
        for group in groups:
            members = list(group.members)
            timings.update(analyse_timing_stream(members, len(tracked), read_of(members), fps, timing,
                                                 chunk_frames=chunk_frames))
        seconds["timing"] = time.perf_counter() - started
        started = time.perf_counter()
        for group in groups:
            if len(group.members) >= 2:
                members = list(group.members)
                limbs.update(limb_lags_in_group(members, len(tracked), read_of(members), fps,
                                                LimbParams(timing=timing), chunk_frames))
        seconds["limbs"] = time.perf_counter() - started
    reference = None
    if teacher is not None and score:
        started = time.perf_counter()
        presence = {person_id: track.frames_present for person_id, track in tracks.items()}
        reference = analyse_against_teacher(teacher, performers, presence, len(tracked), read_of, fps, timing,
                                            chunk_frames)
        seconds["reference"] = time.perf_counter() - started
    results = _person_results(tracks, selection, timings, group_sync, groups, spans, gaps, limbs)
    moments = group_worst_moments(timings, fps, timing.score)
    ordered: dict[str, float] = {part: seconds[part] for part in ("tracks", "timing", "limbs", "sync", "reference")
                                 if part in seconds}
    return VideoAnalysis(results, moments, group_sync, ordered, groups, summary, reference)


def _summarise_tracks(tracked: PoseLog, fps: float, chunk_frames: int) -> TrackSummarizer:
    """Every track's summary and absences, from the recorded frames read a chunk at a time."""
    summarizer = TrackSummarizer(fps)
    for start in range(0, len(tracked), chunk_frames):
        summarizer.add(tracked.rows(max(0, start - summarizer.margin), start + chunk_frames), own_from=start)
    return summarizer


def _identity_summary(identity: IdentityJoiner | None,
                      spans: Mapping[int, Sequence[TrackletSpan]]) -> IdentitySummary:
    """How the ids were made, from the joiner (None: unknown) and each person's tracklets."""
    return IdentitySummary(
        tracklets=0 if identity is None else identity.tracklet_count,
        joins=sum(span.join is not None for person in spans.values() for span in person),
        scene_cuts=() if identity is None else tuple(identity.scene_cuts),
        lookahead_s=0.0 if identity is None else identity.lookahead / identity.fps,
    )


def _pose_source(tracked: PoseLog, ids: Sequence[int], keypoint_min_score: float,
                 unsure: Mapping[int, Sequence[tuple[int, int]]]) -> PoseSource:
    """The poses of `ids` read from the recorded frames, in that order: keypoints at or below
    `keypoint_min_score` absent, and each person's unsure frames (`unsure_edges`) left out."""
    def read(start: int, stop: int) -> list[np.ndarray]:
        poses = tracked.rows(start, stop).poses(keypoint_min_score, only=set(ids))
        for person_id in ids:
            for low, high in unsure.get(person_id, ()):
                if low < stop and high > start:
                    poses[person_id][max(low, start) - start:min(high, stop) - start] = np.nan
        return [poses[person_id] for person_id in ids]
    return read


def _person_results(
    tracks: Mapping[int, TrackSummary],
    selection: Mapping[int, tuple[bool, str]],
    timings: Mapping[int, PersonTiming],
    group_sync: SyncResult | None,
    groups: Sequence[Group],
    spans: Mapping[int, Sequence[TrackletSpan]],
    gaps: Mapping[int, Sequence[tuple[int, int]]],
    limbs: Mapping[int, tuple[LimbTiming, ...]] | None = None,
) -> list[PersonResult]:
    """One `PersonResult` per track, in the order of `tracks`: its summary, whether and why it
    is a performer, its timing, limbs and synchrony (where scored), its group, tracklets and gaps."""
    group_of = {i: group.number for group in groups for i in group.members}
    results = []
    for person_id, track in tracks.items():
        scored, reason = selection[person_id]
        result = timings.get(person_id)
        results.append(PersonResult(
            id=person_id, frames=track.frames_present, first_frame=track.first_frame, last_frame=track.last_frame,
            scored=scored, reason=reason, box=track.box,
            lag_ms=None if result is None else result.lag_ms,
            windows=() if result is None else result.windows,
            score=None if result is None else result.pose_score,
            timing_score=None if result is None else result.timing_score,
            mirrored_with=() if result is None else result.mirrored_with,
            sync=None if group_sync is None else group_sync.persons.get(person_id),
            lag_confidence=None if result is None else result.lag_confidence,
            group=group_of.get(person_id),
            tracklets=tuple(spans.get(person_id, ())),
            gaps=tuple(gaps.get(person_id, ())),
            limbs=(limbs or {}).get(person_id, ()),
            late_limbs=tuple(limb.name for limb in (limbs or {}).get(person_id, ()) if limb.late),
        ))
    return results


def unsure_edges(tracks: Mapping[int, TrackSummary], gaps: Mapping[int, Sequence[tuple[int, int]]], frames: int,
                 edge: int) -> dict[int, list[tuple[int, int]]]:
    """Where each person's keypoints are left out of the analysis: `edge` frames on each side
    of an absence (a gap, or before entering and after leaving the picture mid-video).

    A person who comes out from behind someone, or into the picture, is partly visible for a
    few frames, and the pose model's keypoints there jump (on the composites of
    `tests/composites.py`, by a third of a torso length and more); one such frame makes two
    large velocities that outweigh seconds of dancing in a window's correlation.

    Returns:
        {id: [(first frame, end frame exclusive), ...]}.
    """
    zones: dict[int, list[tuple[int, int]]] = {}
    for person_id, track in tracks.items():
        found = [(low - edge, low) for low, _ in gaps.get(person_id, ())]
        found += [(high + 1, high + 1 + edge) for _, high in gaps.get(person_id, ())]
        if track.first_frame > 0:
            found.append((track.first_frame, track.first_frame + edge))
        if track.last_frame < frames - 1:
            found.append((track.last_frame + 1 - edge, track.last_frame + 1))
        zones[person_id] = [(max(0, low), min(frames, high)) for low, high in found]
    return zones


def choose_groups(
    tracks: Mapping[int, TrackSummary], pairs: Sequence[PairSync]
) -> tuple[dict[int, tuple[bool, str]], list[Group]]:
    """The performers and their groups, from who moves together (see the module's docstring).

    Args:
        tracks: {id: TrackSummary} of every person.
        pairs: The compared pairs (of those `select_performers` keeps: present, tall enough and
            moving), with `moves_together`.

    Returns:
        {id: (performer, reason)} for every person, and the groups, largest first.
    """
    ids = sorted(tracks)
    together = [pair for pair in pairs if pair.moves_together]
    position = {person_id: k for k, person_id in enumerate(ids)}
    count, labels = connected_components(coo_matrix(
        (np.ones(len(together)), ([position[p.ids[0]] for p in together], [position[p.ids[1]] for p in together])),
        shape=(len(ids), len(ids))), directed=False)
    components = [tuple(ids[k] for k in range(len(ids)) if labels[k] == c) for c in range(count)]
    components = sorted((c for c in components if len(c) >= 2), key=lambda c: (-len(c), c[0]))
    fallback = select_performers(tracks, "auto")
    if not components:
        chosen = tuple(i for i in ids if fallback[i][0])
        reason = "nobody moves together above chance: the people present, tall enough and moving"
        return ({i: (scored, f"{why} (nobody moves together above chance)" if scored else why)
                 for i, (scored, why) in fallback.items()},
                [Group(1, chosen, reason, False)] if chosen else [])
    groups = [Group(n, members, "moves together above chance", True) for n, members in enumerate(components, 1)]
    number = {i: group.number for group in groups for i in group.members}
    compared = {i for pair in pairs for i in pair.ids}
    selection: dict[int, tuple[bool, str]] = {}
    for person_id in ids:
        details = fallback[person_id][1]
        if person_id in number:
            partners = sorted({other for pair in together if person_id in pair.ids for other in pair.ids} - {person_id})
            selection[person_id] = (True, f"performer (group {number[person_id]}): present in "
                                          f"{tracks[person_id].presence:.0%} of frames, moves with "
                                          f"{_partners_text(partners, len(groups[number[person_id] - 1].members))}")
        elif person_id in compared:
            selection[person_id] = (False, f"not moving with the group: present in {tracks[person_id].presence:.0%} "
                                           "of frames, moving, but not with anyone above chance")
        else:  # not compared: select_performers says why (brief, small or static)
            selection[person_id] = (False, details)
    return selection, groups


def _partners_text(partners: Sequence[int], group_size: int, named: int = 4) -> str:
    """"#2, #3" for a few partners; in a class, "all 29 others in the group" or "17 of the 29
    others in the group"."""
    if len(partners) <= named:
        return ", ".join(f"#{i}" for i in partners)
    others = group_size - 1
    if len(partners) == others:
        return f"all {others} others in the group"
    return f"{len(partners)} of the {others} others in the group"


def group_worst_moments(timings: Mapping[int, PersonTiming], fps: float, params: ScoreParams) -> list[Moment]:
    """The worst moments of the group's pose score (mean distance over the performers)."""
    if len(timings) < 2:
        return []
    distances = np.stack([result.distances for result in timings.values()])
    finite = np.isfinite(distances)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, distances, 0.0).sum(axis=0) / finite.sum(axis=0)
    group_scores = np.array([distance_to_score(d, params) if np.isfinite(d) else np.nan for d in mean])
    return worst_moments(group_scores, fps, {i: result.distances for i, result in timings.items()})


@dataclass(frozen=True)
class GroupTiming:
    """The performers' timing taken together.

    Attributes:
        performers: The ids of the persons scored, ascending.
        lag_spread_ms: The latest performer's lag minus the earliest's, milliseconds, or None
            with fewer than two lags.
        pose_score: The mean of the performers' pose scores (0..10), or None.
        timing_score: The mean of the performers' timing scores (0..10), or None.
    """

    performers: tuple[int, ...]
    lag_spread_ms: float | None
    pose_score: float | None
    timing_score: float | None


def group_timing(persons: Sequence[PersonResult]) -> GroupTiming:
    """The group's lag spread and mean scores over the performers among `persons`."""
    scored = [person for person in persons if person.scored]
    lags = [person.lag_ms for person in scored if person.lag_ms is not None]
    pose = [person.score for person in scored if person.score is not None]
    timing = [person.timing_score for person in scored if person.timing_score is not None]
    return GroupTiming(
        performers=tuple(person.id for person in scored),
        lag_spread_ms=float(max(lags) - min(lags)) if len(lags) >= 2 else None,
        pose_score=float(np.mean(pose)) if pose else None,
        timing_score=float(np.mean(timing)) if timing else None,
    )
