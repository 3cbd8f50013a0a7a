"""Reports beside each output video: `<stem>.json`, `<stem>.csv` and `<stem>.png`.

The JSON schema, with every key, is documented in docs/REPORTS.md. Every file is written under
a hidden temporary name in the same folder and renamed into place when complete, and the JSON
is written last: its presence (with a matching fingerprint) means that all of a video's outputs
are complete, which is what a folder run's resume relies on.

The statistics, the person entries and the fingerprint are plain functions of their inputs, with
no I/O.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from config import Config
from pipeline.results import FrameResult, FrameTable, PersonResult, RunResult
from workers.draw import colour_of
from workers.encode import partial_path
from workers.poses import poses_path
from workers.sync import SyncResult, SyncScore
from workers.timing import Moment

FORMAT = "dancingskeletons-report/1"

#: The per-frame CSV's header.
CSV_COLUMNS = ("frame", "seconds", "persons", "score", "displayed")

#: The pipeline stages whose timings a report holds (null for a stage that did not run).
STAGES = ("decode", "infer", "score_draw", "encode")


@dataclass(frozen=True)
class OutputFiles:
    """Every file one run writes beside (or as) its output video.

    Attributes:
        video: The annotated video (`<stem>.mp4`).
        poses: The pose cache (`<stem>.poses.npz`).
        csv: One row per frame (`<stem>.csv`).
        plot: The score over time (`<stem>.png`).
        json: The report (`<stem>.json`), written last.
    """

    video: Path
    poses: Path
    csv: Path
    plot: Path
    json: Path

    @classmethod
    def of(cls, output: Path) -> OutputFiles:
        """The files that belong to the output video path `output`."""
        output = Path(output)
        return cls(
            video=output,
            poses=poses_path(output),
            csv=output.with_suffix(".csv"),
            plot=output.with_suffix(".png"),
            json=output.with_suffix(".json"),
        )

    def all(self) -> tuple[Path, ...]:
        """Every file, the JSON first (removing them in this order never leaves a stale report)."""
        return (self.json, self.video, self.poses, self.csv, self.plot)


def expected_files(config: Config) -> dict[str, Path]:
    """The outputs a run with `config` leaves, by the name `files` gives them in the report."""
    files = OutputFiles.of(config.output)
    expected = {"csv": files.csv, "plot": files.plot}
    if config.video:
        expected["video"] = files.video
    if config.save_poses and config.poses is None:
        expected["poses"] = files.poses
    return expected


def fingerprint(config: Config) -> str:
    """A digest of the report format and every setting that changes a run's results.

    Two configs with the same fingerprint produce the same numbers and the same pixels from
    the same input (see `config.settings.RUN_ONLY_SETTINGS` for what is left out).
    """
    canonical = json.dumps({"format": FORMAT, "settings": config.result_settings()}, sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def input_identity(path: Path) -> dict[str, int]:
    """Size in bytes and modification time in nanoseconds: a changed input is redone."""
    stat = Path(path).stat()
    return {"size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


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


def person_entries(persons: Sequence[PersonResult]) -> list[dict]:
    """The `persons` entries of the report: one per tracked person, ids ascending.

    Args:
        persons: `RunResult.persons`.

    Returns:
        One dict per person with id, frames, first_frame, last_frame, box ([x0, y0, x1, y1]
        pixels, to 0.1), scored, reason, lag_ms, lag_confidence, lag_ms_windows ([{start_s, end_s, lag_ms}]),
        score, timing_score, mirrored_with.
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
        }
        for person in sorted(persons, key=lambda person: person.id)
    ]


def sync_entry(score: SyncScore | None) -> dict | None:
    """A synchrony score with its chance level as the report gives it, or None."""
    if score is None:
        return None
    return {"score": score.score, "chance_mean": score.chance_mean, "chance_p95": score.chance_p95,
            "p_value": score.p_value, "above_chance": score.above_chance}


def sync_summary(persons: Sequence[PersonResult], mirror: bool, sync: SyncResult | None = None) -> dict:
    """The group's timing and synchrony: who was scored, the lag spread, the mean scores, the
    group's synchrony calibrated against chance (its fields null where there is none)."""
    scored = [person for person in persons if person.scored]
    lags = [person.lag_ms for person in scored if person.lag_ms is not None]
    pose = [person.score for person in scored if person.score is not None]
    timing = [person.timing_score for person in scored if person.timing_score is not None]
    group = sync_entry(None if sync is None else sync.group) or dict.fromkeys(
        ("score", "chance_mean", "chance_p95", "p_value", "above_chance"))
    return {
        "performers": [person.id for person in scored],
        "mirror": mirror,
        "lag_spread_ms": float(max(lags) - min(lags)) if len(lags) >= 2 else None,
        "pose_score": float(np.mean(pose)) if pose else None,
        "timing_score": float(np.mean(timing)) if timing else None,
        **group,
        "method": None if sync is None else sync.method,
        "windows": [] if sync is None else [
            {"start_s": start, "end_s": end, "score": score} for start, end, score in sync.windows
        ],
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
            "plot": files.plot.name,
        },
        "model": result.model,
        "device": result.device,
        "encoder": result.encoder,
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
        "persons": person_entries(result.persons),
        "sync": sync_summary(result.persons, config.mirror, result.sync),
        "worst_moments": moment_entries(result.worst_moments),
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


def frame_column(frames: Sequence[FrameResult], name: str) -> np.ndarray:
    """One field of every frame as a float64 array, NaN where it is None ("timestamp",
    "persons", "score" or "displayed"); read straight from the records of a `FrameTable`."""
    if isinstance(frames, FrameTable):
        return frames.column(name).astype(np.float64)
    return np.array([np.nan if getattr(frame, name) is None else getattr(frame, name) for frame in frames],
                    dtype=np.float64)


def frame_rows(frames: Iterable[FrameResult]) -> Iterator[list[str]]:
    """The CSV rows (without the header): frame, seconds, persons, score, displayed.

    A frame without a score or a displayed value has an empty cell there. A generator, so
    that a long video's rows are never all in memory at once.
    """
    for frame in frames:
        yield [str(frame.index), _number(frame.timestamp), str(frame.persons), _number(frame.score),
               _number(frame.displayed)]


def write_atomically(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file under its hidden partial name, then rename it into place.

    Args:
        path: The final name.
        write: Writes the content to the open binary file it is given.
    """
    temporary = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """A CSV file (UTF-8, "\\n" line ends), written atomically, row by row."""

    def write(handle: io.BufferedWriter) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()  # the caller closes the file

    return write_atomically(path, write)


def write_json(path: Path, data: dict) -> Path:
    """A JSON file (UTF-8, indented), written atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"

    def write(handle: io.BufferedWriter) -> None:
        handle.write(text.encode("utf-8"))

    return write_atomically(path, write)


def unscored_runs(scored: Sequence[bool]) -> list[tuple[int, int]]:
    """The stretches of consecutive unscored frames, as (first index, count) pairs."""
    flags = np.concatenate([[False], ~np.asarray(scored, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    return [(int(start), int(end - start)) for start, end in zip(edges[::2], edges[1::2])]


def plot_figure(
    frames: Sequence[FrameResult], *, frame_seconds: float, total: float | None, score_max: float, title: str,
    scored: bool, persons: Sequence[PersonResult] = (), sync: SyncResult | None = None,
):
    """The score over time as a matplotlib Figure (no pyplot: no global state, thread-safe).

    Top: each frame's score (thin) and the on-screen moving average (thick), unscored frames
    as gaps over grey bands, the total score as a dashed line, and the group's synchrony per
    analysis window (at the window's centre) with its chance level. Middle: each performer's lag
    behind the group per analysis window (at the window's centre, in the person's video
    colour). Bottom: persons per frame. The x axis is in seconds, each frame drawn at its
    start time and lasting `frame_seconds`.
    """
    from matplotlib.figure import Figure

    seconds, score, shown, persons_count = (frame_column(frames, name)
                                            for name in ("timestamp", "score", "displayed", "persons"))
    figure = Figure(figsize=(10, 5), dpi=100, layout="constrained")
    figure.suptitle(title, x=0.01, ha="left", fontsize=11)
    top, middle, bottom = figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 1))
    if scored and len(frames):
        runs = unscored_runs(~np.isnan(score))
        if runs:
            spans = [(seconds[start], count * frame_seconds) for start, count in runs]
            top.broken_barh(spans, (0, 1), transform=top.get_xaxis_transform(), color="0.88", label="unscored")
        top.plot(seconds, score, color="tab:blue", linewidth=0.8, alpha=0.7, marker=".", markersize=3,
                 label="frame score")
        top.plot(seconds, shown, color="tab:orange", linewidth=2.0, label="on screen (moving average)")
        if total is not None:
            top.axhline(total, color="tab:red", linestyle="--", linewidth=1.2, label=f"total {total:.2f}")
        _plot_sync(top, sync)
        top.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, fontsize=8, frameon=False,
                   borderaxespad=0.2)
    else:
        message = "scoring off (--no-score)" if not scored else "no frames"
        top.text(0.5, 0.5, message, transform=top.transAxes, ha="center", va="center", color="0.4")
    top.set_ylim(-0.02 * score_max, 1.05 * score_max)
    top.set_ylabel("score")
    top.grid(True, alpha=0.3)
    _plot_lags(middle, persons)
    bottom.step(seconds, persons_count, where="post", color="tab:green", linewidth=1.2)
    bottom.set_ylim(-0.1, max(2, int(persons_count.max(initial=0))) + 0.5)
    bottom.yaxis.get_major_locator().set_params(integer=True)
    bottom.set_ylabel("persons")
    bottom.set_xlabel("seconds")
    bottom.grid(True, alpha=0.3)
    bottom.set_xlim(0, max(len(frames) * frame_seconds, frame_seconds))
    return figure


def _plot_sync(axes, sync: SyncResult | None) -> None:
    """The group's synchrony per window, and the 95th percentile of chance as a dotted line."""
    if sync is None or sync.group is None:
        return
    centres = np.array([(start + end) / 2 for start, end, _ in sync.windows])
    values = np.array([np.nan if score is None else score for _, _, score in sync.windows])
    axes.plot(centres, values, color="tab:purple", linewidth=1.6, marker="s", markersize=4,
              label=f"group sync {sync.group.score:.1f}")
    axes.axhline(sync.group.chance_p95, color="tab:purple", linestyle=":", linewidth=1.0,
                 label=f"chance p95 {sync.group.chance_p95:.1f}")


def _plot_lags(axes, persons: Sequence[PersonResult]) -> None:
    """Each scored person's window lags (ms) over time, in the person's video colour."""
    drawn = False
    for person in persons:
        if not person.scored or not person.windows:
            continue
        centres = np.array([(window.start_s + window.end_s) / 2 for window in person.windows])
        lags = np.array([np.nan if window.lag_ms is None else window.lag_ms for window in person.windows])
        if not np.isfinite(lags).any():
            continue
        colour = tuple(channel / 255 for channel in colour_of(person.id))
        axes.plot(centres, lags, color=colour, marker="o", markersize=3, linewidth=1.4, label=f"#{person.id}")
        drawn = True
    axes.axhline(0, color="0.5", linewidth=0.8)
    if drawn:
        axes.legend(loc="upper right", ncols=8, fontsize=7, frameon=False)
    else:
        axes.text(0.5, 0.5, "no lag measured", transform=axes.transAxes, ha="center", va="center", color="0.4")
    axes.set_ylabel("lag ms\n(+ behind)")
    axes.grid(True, alpha=0.3)


def write_plot(path: Path, figure) -> Path:
    """Render a Figure to a PNG file atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with warnings.catch_warnings():
        # A file name in a script the bundled font lacks is drawn with boxes; that is fine.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        return write_atomically(path, lambda handle: figure.savefig(handle, format="png"))


def write_reports(result: RunResult, config: Config, probe_seconds: float = 0.0) -> dict:
    """Write `<stem>.csv`, `<stem>.png`, then `<stem>.json` beside `config.output`.

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
    write_json(files.json, report)
    return report


def read_report(path: Path) -> dict | None:
    """A report written by `write_reports`, or None when missing or not one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        return None
    return report


def complete_report(config: Config) -> dict | None:
    """The report of an earlier run whose outputs can be kept as they are, or None.

    They can when the JSON exists, was made with the same result settings (fingerprint) from
    the same input file (size and modification time), and every output `config` asks for
    exists and is the one the report lists.
    """
    files = OutputFiles.of(config.output)
    report = read_report(files.json)
    if report is None or report.get("fingerprint") != fingerprint(config):
        return None
    try:
        if report.get("input_file") != input_identity(config.input):
            return None
    except OSError:
        return None
    listed = report.get("files") or {}
    for name, path in expected_files(config).items():
        if listed.get(name) != path.name or not path.is_file():
            return None
    return report


def remove_outputs(output: Path) -> None:
    """Remove every output of `output` and its partial files, the JSON first."""
    for path in OutputFiles.of(output).all():
        path.unlink(missing_ok=True)
        partial_path(path).unlink(missing_ok=True)

