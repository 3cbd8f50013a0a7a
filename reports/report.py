"""Reports beside each output video: `<stem>.json`, `<stem>.csv` and `<stem>.png`.

The JSON's contract is its schema (reports/schemas/report.schema.json, rendered in
docs/REPORTS.md). Every file is written atomically (`workers.files`) and the JSON last: its
presence (with a matching fingerprint) means that all of a video's outputs are complete,
which is what a folder run's resume relies on (`pipeline.resume`); the plot is
`reports.plot`. The numbers come from the analysis in `workers/`; this module only lays them out.

The statistics, the person entries and the fingerprint are plain functions of their inputs, with
no I/O.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from config import Config
from reports.outputs import FORMAT, OutputFiles, expected_files
from reports.plot import frame_column, plot_figure, write_plot
from reports.results import FrameResult, Group, IdentitySummary, PersonResult, RunResult
from workers.analysis import group_timing
from workers.files import write_csv, write_json
from workers.identity import METHOD as IDENTITY_METHOD
from workers.identity import TrackletSpan
from workers.input_size import InputSize
from workers.limbs import LimbTiming
from workers.moments import Moment
from workers.reference import ReferenceAnalysis, TeacherSetup, TeacherTiming
from workers.sync import SyncResult, SyncScore

#: The per-frame CSV's header.
CSV_COLUMNS = ("frame", "seconds", "persons", "score", "displayed", "ids")
#: The per-person CSV's header (`<stem>.persons.csv`, for a spreadsheet).
PERSON_COLUMNS = ("id", "performer", "group", "lag_ms", "lag_confidence", "sync", "sync_p_value", "pose_score",
                  "timing_score", "late_limbs", "teacher_lag_ms", "teacher_pose_score", "teacher_timing_score",
                  "teacher_late_limbs", "seen_share", "first_s", "last_s", "gaps", "reason")

#: The pipeline stages whose timings a report holds (null for a stage that did not run).
STAGES = ("decode", "infer", "score", "draw", "encode")


def fingerprint(config: Config) -> str:
    """A digest of the report format and every setting that changes a run's results.

    Two configs with the same fingerprint produce the same numbers and the same pixels from
    the same input (see `config.settings.RUN_ONLY_SETTINGS` for what is left out).
    """
    settings = config.result_settings()
    if config.reference is not None and Path(config.reference).is_file():
        settings["reference_file"] = input_identity(config.reference)  # a new teacher's video is a new run
    canonical = json.dumps({"format": FORMAT, "settings": settings}, sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def input_identity(path: Path) -> dict[str, int]:
    """Size in bytes and modification time in nanoseconds: a changed input is redone."""
    stat = Path(path).stat()
    return {"size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def describe(report: dict) -> str:
    """A finished report in a few words: frames, scored frames, total score."""
    return in_words(report["frames"], report["frames_scored"], report["score"]["mean"])


def in_words(frames: int | None, scored: int | None, mean: float | None) -> str:
    """Frames, scored frames and a total score in a few words (None where unknown)."""
    total = "no score" if mean is None else f"total score {mean:.2f}"
    return f"{frames} frames, {scored} scored, {total}"


def score_statistics(scores: Iterable[float | None]) -> dict[str, float | int | None]:
    """Summary statistics of the frame scores, unscored frames (None) left out.

    Args:
        scores: One score per frame, None where the frame was not scored.

    Returns:
        count, mean, std (population), min, p10, p25, median, p75, p90, max; every value but
        count is None when no frame was scored.
    """
    values = np.array([score for score in scores if score is not None], dtype=np.float64)
    names = ("mean", "std", "min", "p10", "p25", "median", "p75", "p90", "max")
    if values.size == 0:
        return {"count": 0, **{name: None for name in names}}
    p10, p25, median, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    numbers = (values.mean(), values.std(), values.min(), p10, p25, median, p75, p90, values.max())
    return {"count": int(values.size), **{name: float(value) for name, value in zip(names, numbers)}}


def input_size_entry(choice: InputSize | None) -> dict | None:
    """The report's `input_size`: the model's input size for the video and why."""
    if choice is None:
        return None
    return {
        "pixels": choice.pixels,
        "side": choice.side,
        "default": choice.default,
        "how": choice.how,
        "person_pixels": None if choice.person_pixels is None else round(choice.person_pixels, 1),
        "scout_seconds": round(choice.scout_seconds, 3),
        "text": choice.describe(),
    }


def person_entries(persons: Sequence[PersonResult], fps: float,
                   teacher: Mapping[int, TeacherTiming] | None = None) -> list[dict]:
    """The `persons` entries of the report: one per tracked person, ids ascending.

    Args:
        persons: `RunResult.persons`.
        fps: Frames per second (for the gaps' times).
        teacher: {id: each performer against the teacher}, or None without one.

    Returns:
        One dict per person with id, frames, first_frame, last_frame, box ([x0, y0, x1, y1]
        pixels, to 0.1), scored, reason, lag_ms, lag_confidence, lag_ms_windows ([{start_s, end_s, lag_ms}]),
        score, timing_score, mirrored_with, sync, group, tracklets, gaps and reference (against
        the teacher, None when not compared).
    """
    return [
        {
            "id": person.id,
            "frames": person.frames,
            "first_frame": person.first_frame,
            "last_frame": person.last_frame,
            "box": None if person.box is None else [round(value, 1) for value in person.box],
            "scored": person.scored,
            "reason": person.reason,
            "lag_ms": person.lag_ms,
            "lag_confidence": person.lag_confidence,
            "lag_ms_windows": [
                {"start_s": window.start_s, "end_s": window.end_s, "lag_ms": window.lag_ms} for window in person.windows
            ],
            "score": person.score,
            "timing_score": person.timing_score,
            "mirrored_with": list(person.mirrored_with),
            "sync": sync_entry(person.sync),
            "group": person.group,
            "tracklets": [tracklet_entry(span) for span in person.tracklets],
            "gaps": [{"start_frame": first, "end_frame": last, "start_s": first / fps, "end_s": (last + 1) / fps}
                     for first, last in person.gaps],
            "limbs": limb_entries(person.limbs),
            "late_limbs": list(person.late_limbs),
            "reference": teacher_entry((teacher or {}).get(person.id)),
        }
        for person in sorted(persons, key=lambda person: person.id)
    ]


def teacher_entry(timing: TeacherTiming | None) -> dict | None:
    """`persons[].reference`: one performer against the teacher, or None when not compared."""
    if timing is None:
        return None
    return {
        "lag_ms": timing.lag_ms,
        "lag_confidence": timing.lag_confidence,
        "score": timing.score,
        "timing_score": timing.timing_score,
        "windows": [{"start_s": window.start_s, "end_s": window.end_s, "lag_ms": window.lag_ms,
                     "correlation": window.correlation} for window in timing.windows],
        "limbs": limb_entries(timing.limbs),
        "late_limbs": list(timing.late_limbs),
    }


def limb_entries(limbs: Sequence[LimbTiming]) -> dict:
    """Each limb's lag as the report gives it, by limb name."""
    return {limb.name: {"lag_ms": limb.lag_ms, "relative_ms": limb.relative_ms, "uncertainty_ms": limb.uncertainty_ms,
                        "reason": limb.reason, "late": limb.late, "window_lags_ms": list(limb.window_lags_ms),
                        "late_windows": list(limb.late_windows)} for limb in limbs}


def reference_entry(teacher: TeacherSetup | None, reference: ReferenceAnalysis | None) -> dict | None:
    """`reference`: the teacher this video was compared with, the alignment and the class's figures;
    None without `--reference`."""
    if teacher is None:
        return None
    alignment = teacher.alignment if reference is None else reference.alignment
    comparison = None if reference is None else reference.comparison
    timings = [] if comparison is None else list(comparison.persons.values())
    lags = [timing.lag_ms for timing in timings if timing.lag_ms is not None]
    scores = [timing.score for timing in timings if timing.score is not None]
    timing_scores = [timing.timing_score for timing in timings if timing.timing_score is not None]
    return {
        "input": teacher.input,
        "poses": teacher.poses_file or None,
        "person": teacher.teacher.person,
        "person_reason": teacher.teacher.reason,
        "persons_found": list(teacher.persons_found),
        "duration_seconds": teacher.teacher.duration,
        "fps": teacher.teacher.fps,
        "alignment": None if alignment is None else alignment.method,
        "offset_seconds": None if alignment is None else alignment.offset_seconds,
        "drift_ppm": None if alignment is None else alignment.drift_ppm,
        "alignment_confidence": None if alignment is None else alignment.confidence,
        "alignment_detail": None if alignment is None else alignment.detail,
        "audio_not_used": teacher.why_not_audio or None,
        "overlap_seconds": None if reference is None else reference.overlap_seconds,
        "compared": comparison is not None,
        "reason": None if reference is None else reference.reason or None,
        "mirror": None if comparison is None else comparison.mirror,
        "mirror_source": None if comparison is None else comparison.mirror_source,
        "mirror_strength": None if comparison is None or comparison.mirror_strength is None
        else list(comparison.mirror_strength),
        "performers": [] if comparison is None else sorted(comparison.persons),
        "lag_ms_median": float(np.median(lags)) if lags else None,
        "score": float(np.mean(scores)) if scores else None,
        "timing_score": float(np.mean(timing_scores)) if timing_scores else None,
        "worst_moments": [] if comparison is None else moment_entries(comparison.worst_moments),
    }


def teacher_timings(reference: ReferenceAnalysis | None) -> dict[int, TeacherTiming] | None:
    """{id: TeacherTiming} of a comparison with the teacher, or None."""
    if reference is None or reference.comparison is None:
        return None
    return reference.comparison.persons


def tracklet_entry(span: TrackletSpan) -> dict:
    """One of a person's tracklets as the report gives it, with its join's cost and terms."""
    join = span.join
    return {
        "start_frame": span.first_frame,
        "end_frame": span.last_frame,
        "frames": span.frames,
        "join": None if join is None else {
            "gap_frames": join.gap_frames, "cost": join.cost,
            **{term: join.terms.get(term) for term in ("position", "velocity", "shape", "colour")},
        },
    }


def pair_entries(sync: SyncResult | None) -> list[dict]:
    """`sync.pairs`: every compared pair's synchrony and whether they move together."""
    if sync is None:
        return []
    empty = dict.fromkeys(("score", "chance_mean", "chance_p95", "p_value", "above_chance"))
    return [{"ids": list(pair.ids), **(sync_entry(pair.score) or empty), "likeness": pair.likeness,
             "likeness_p_value": pair.likeness_p_value, "moves_together": pair.moves_together, "lag_ms": pair.lag_ms}
            for pair in sync.pairs]


def group_entries(groups: Sequence[Group]) -> list[dict]:
    """`groups`: the groups of performers, largest first."""
    return [{"number": group.number, "members": list(group.members), "reason": group.reason,
             "moves_together": group.moves_together, "sync": sync_entry(group.sync)} for group in groups]


def identity_entry(identity: IdentitySummary, config: Config, fps: float) -> dict:
    """`identity`: how the ids were made, and what a reader should know about them."""
    cuts = [{"frame": frame, "seconds": frame / fps} for frame in identity.scene_cuts]
    note = None
    if cuts:
        times = ", ".join(f"{cut['seconds']:.2f} s" for cut in cuts)
        note = (f"identities were not carried across {len(cuts)} camera cut{'s' if len(cuts) > 1 else ''} "
                f"(at {times}): the same person after a cut has a new id")
    return {"method": IDENTITY_METHOD, "lookahead_s": identity.lookahead_s, "max_gap_s": config.max_gap_s,
            "tracklets": identity.tracklets, "joins": identity.joins, "scene_cuts": cuts, "note": note}


def sync_entry(score: SyncScore | None) -> dict | None:
    """A synchrony score with its chance level as the report gives it, or None."""
    if score is None:
        return None
    return {"score": score.score, "chance_mean": score.chance_mean, "chance_p95": score.chance_p95,
            "p_value": score.p_value, "above_chance": score.above_chance}


def sync_summary(persons: Sequence[PersonResult], mirror: bool, sync: SyncResult | None = None) -> dict:
    """The group's timing and synchrony: who was scored, the lag spread, the mean scores, the
    group's synchrony calibrated against chance (its fields null where there is none)."""
    timing = group_timing(persons)
    group = sync_entry(None if sync is None else sync.group) or dict.fromkeys(
        ("score", "chance_mean", "chance_p95", "p_value", "above_chance"))
    return {
        "performers": list(timing.performers),
        "mirror": mirror,
        "lag_spread_ms": timing.lag_spread_ms,
        "pose_score": timing.pose_score,
        "timing_score": timing.timing_score,
        **group,
        "method": None if sync is None else sync.method,
        "windows": [] if sync is None else [
            {"start_s": start, "end_s": end, "score": score} for start, end, score in sync.windows
        ],
        "pairs": pair_entries(sync),
    }


def moment_entries(moments: Sequence[Moment]) -> list[dict]:
    """The `worst_moments` entries: start_s, end_s, score, person."""
    return [
        {"start_s": moment.start_s, "end_s": moment.end_s, "score": moment.mean_score, "person": moment.worst_person}
        for moment in moments
    ]


def _stage_timings(result: RunResult) -> dict[str, dict[str, float | int] | None]:
    timings: dict[str, dict[str, float | int] | None] = {}
    for name in STAGES:
        clock = result.stages.get(name)
        timings[name] = None if clock is None else {
            "busy_seconds": round(clock.busy, 6), "waiting_seconds": round(clock.waiting, 6), "items": clock.items,
        }
    return timings


def build_report(
    result: RunResult,
    config: Config,
    *,
    input_file: dict[str, int],
    probe_seconds: float,
    reports_seconds: float,
    created: datetime,
) -> dict:
    """The JSON report of a finished run (schema: docs/REPORTS.md). No I/O.

    Args:
        result: The finished run.
        config: Its settings.
        input_file: The input's `input_identity`.
        probe_seconds: Seconds spent probing the input before the run.
        reports_seconds: Seconds spent writing the CSV and the plot.
        created: When the report was made.
    """
    info = result.info
    frames = len(result.frames)
    fps = float(info.fps)
    files = OutputFiles.of(config.output)
    written = expected_files(config)
    total_seconds = probe_seconds + result.seconds + reports_seconds
    scores = [None if np.isnan(score) else float(score) for score in frame_column(result.frames, "score")]
    return {
        "format": FORMAT,
        "created": created.astimezone(UTC).isoformat(timespec="seconds"),
        "input": str(config.input),
        "input_file": dict(input_file),
        "output": None if result.output is None else str(result.output),
        "files": {
            "video": files.video.name if "video" in written else None,
            "poses": files.poses.name if "poses" in written else None,
            "csv": files.csv.name,
            "persons": files.persons.name,
            "plot": files.plot.name,
        },
        "model": result.model,
        "device": result.device,
        "runtime": result.runtime,
        "input_size": input_size_entry(result.input_size),
        "encoder": result.encoder,
        "decoder": result.decoder,
        "width": info.width,
        "height": info.height,
        "fps": fps,
        "fps_exact": f"{info.fps.numerator}/{info.fps.denominator}",
        "duration_seconds": frames / fps,
        "frames": frames,
        "frames_scored": sum(score is not None for score in scores),
        "score": {
            "enabled": config.score,
            "mean": result.total,
            "end_card": result.total_text if config.score else None,
            "scale": config.score_max,
            "per_frame": score_statistics(scores),
        },
        "persons_tracked": True,
        "identity": identity_entry(result.identity, config, fps),
        "persons": person_entries(result.persons, fps, teacher_timings(result.reference)),
        "sync": sync_summary(result.persons, config.mirror, result.sync),
        "groups": group_entries(result.groups),
        "worst_moments": moment_entries(result.worst_moments),
        "reference": reference_entry(result.teacher, result.reference),
        "settings": config.as_dict(),
        "fingerprint": fingerprint(config),
        "timings": {
            "probe_seconds": round(probe_seconds, 6),
            "pipeline_seconds": round(result.seconds, 6),
            "reports_seconds": round(reports_seconds, 6),
            "analysis": {f"{part}_seconds": round(seconds, 6) for part, seconds in result.analysis_seconds.items()},
            "total_seconds": round(total_seconds, 6),
            "frames_per_second": frames / total_seconds if total_seconds > 0 else None,
            "stages": _stage_timings(result),
        },
    }


def _number(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def frame_rows(frames: Iterable[FrameResult]) -> Iterator[list[str]]:
    """The CSV rows (without the header): frame, seconds, persons, score, displayed, ids.

    A frame without a score or a displayed value has an empty cell there; `ids` are the ids of
    the frame's persons (those drawn), separated by spaces. A generator, so that a long
    video's rows are never all in memory at once.
    """
    for frame in frames:
        yield [str(frame.index), _number(frame.timestamp), str(frame.persons), _number(frame.score),
               _number(frame.displayed), " ".join(str(person_id) for person_id in frame.ids)]


def person_rows(persons: Sequence[dict], fps: float, frames: int) -> Iterator[list[str]]:
    """The per-person CSV rows (without the header), from the report's `persons` entries:
    performers first, by group and id, then the others by id; empty cells where unknown."""
    ordered = sorted(persons, key=lambda p: (not p["scored"], p["group"] or 0, p["id"]))
    for person in ordered:
        sync = person["sync"] or {}
        teacher = person["reference"] or {}
        yield [str(person["id"]), "yes" if person["scored"] else "no",
               "" if person["group"] is None else str(person["group"]), _number(person["lag_ms"], 1),
               _number(person["lag_confidence"], 2), _number(sync.get("score"), 2), _number(sync.get("p_value"), 3),
               _number(person["score"], 2), _number(person["timing_score"], 2), " ".join(person["late_limbs"]),
               _number(teacher.get("lag_ms"), 1), _number(teacher.get("score"), 2),
               _number(teacher.get("timing_score"), 2), " ".join(teacher.get("late_limbs") or ()),
               _number(person["frames"] / frames if frames else None, 3), _number(person["first_frame"] / fps, 3),
               _number((person["last_frame"] + 1) / fps, 3), str(len(person["gaps"])), person["reason"]]


def write_reports(result: RunResult, config: Config, probe_seconds: float = 0.0) -> dict:
    """Write `<stem>.csv`, `<stem>.persons.csv`, `<stem>.png`, then `<stem>.json` beside `config.output`.

    Args:
        result: The finished run.
        config: Its settings.
        probe_seconds: Seconds spent probing the input before the run (for the timings).

    Returns:
        The report as written to the JSON file.
    """
    started = time.perf_counter()
    files = OutputFiles.of(config.output)
    write_csv(files.csv, CSV_COLUMNS, frame_rows(result.frames))
    if result.total is not None:
        title = f"{config.input.name}: total score {result.total:.2f} ({result.total_text})"
    elif config.score:
        title = f"{config.input.name}: no scored frame"
    else:
        title = config.input.name
    figure = plot_figure(result.frames, frame_seconds=1 / float(result.info.fps), total=result.total,
                         score_max=config.score_max, title=title, scored=config.score, persons=result.persons,
                         sync=result.sync)
    write_plot(files.plot, figure)
    report = build_report(
        result, config,
        input_file=input_identity(config.input),
        probe_seconds=probe_seconds,
        reports_seconds=time.perf_counter() - started,
        created=datetime.now(UTC),
    )
    write_csv(files.persons, PERSON_COLUMNS, person_rows(report["persons"], float(result.info.fps),
                                                         len(result.frames)))
    write_json(files.json, report)
    return report
